//! What the controller's core wants done, in the order it decided it: messages to connections,
//! connections to close, lines for the prompt and the log, and the end of the process. The
//! driver drains it after every input; each input adds a bounded number of entries (at most one
//! per connection, for an exit's Shutdown), so the queue never outgrows the connection table.

use std::collections::VecDeque;

use crate::c2::proto::{AgentInfo, Msg};
use crate::c2::registry::ConnId;

use super::link::CloseReason;

#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Queue `msg` on connection `to` (a connection the driver no longer has is skipped).
    Send { to: ConnId, msg: Msg },
    /// Close `conn`: the core has already forgotten it.
    Close { conn: ConnId, reason: CloseReason },
    /// Show this at the interactive prompt.
    Prompt(PromptOut),
    /// One line for the service log (stderr).
    Log(String),
    /// The exit is over: give `flush`'s last bytes (its ExitDone) a moment, then end.
    Exit { flush: Option<ConnId> },
}

/// What the prompt shows; the prompt UI renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptOut {
    /// A line of text (progress, a refusal, a usage hint).
    Say(String),
    /// A comparator report as its JSON line, printed as the human table.
    Report(String),
    Status(Vec<AgentInfo>),
}

#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Out>,
}

impl Outbox {
    pub fn push(&mut self, o: Out) {
        self.queue.push_back(o);
    }
    pub fn log(&mut self, line: impl Into<String>) {
        self.push(Out::Log(line.into()));
    }
    pub fn pop(&mut self) -> Option<Out> {
        self.queue.pop_front()
    }
    pub fn len(&self) -> usize {
        self.queue.len()
    }
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
