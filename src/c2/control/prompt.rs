//! The original's `>>>` prompt: a helper thread reads lines (and only wakes the loop), the core
//! parses and answers them, and this module renders the answers.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use mio::Waker;

use super::outbox::PromptOut;
use crate::c2::proto::{AgentInfo, Msg, RunRequest};
use crate::compare::Report;
use crate::wire::{Order, Transport};

pub const USAGE: &str = "commands: run N N_MSGS [fanout|multicast] [ORDER], status, exit";

/// Why a prompt line is not a command; the text is what the prompt shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("{what} must be a number, got {got:?}")]
    NotANumber { what: &'static str, got: String },
    /// Neither a transport nor an order (the transport parser's words, then the orders).
    #[error("{0}; or an order: none, fifo, causal, sequencer, lamport")]
    BadWord(String),
    #[error("{USAGE}")]
    Usage,
}

fn number<T: std::str::FromStr>(what: &'static str, w: &str) -> Result<T, PromptError> {
    w.parse().map_err(|_| PromptError::NotANumber {
        what,
        got: w.to_owned(),
    })
}

/// A prompt line as a request (`None` for a blank line).
pub fn parse_prompt(line: &str) -> Result<Option<Msg>, PromptError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => Ok(None),
        ["status"] => Ok(Some(Msg::StatusRequest)),
        ["exit"] => Ok(Some(Msg::ExitRequest)),
        ["run", n, m, rest @ ..] if rest.len() <= 2 => {
            let peers = number("N", n)?;
            let msgs = number("N_MSGS", m)?;
            // Transport and order, each optional, in either order: the words do not overlap.
            let (mut transport, mut order) = (Transport::Fanout, Order::None);
            for w in rest {
                match (w.parse(), w.parse()) {
                    (Ok(t), _) => transport = t,
                    (_, Ok(o)) => order = o,
                    (Err(e), Err(_)) => return Err(PromptError::BadWord(e)),
                }
            }
            Ok(Some(Msg::RunRequest(RunRequest {
                peers,
                msgs,
                transport,
                order,
                repair: None,
                interval_ms: (10, 100),
                size: 0,
                wan: String::new(),
                time_scale: 1.0,
                wan_loss: 0.0,
                seed: None,
                ssm: false,
            })))
        }
        _ => Err(PromptError::Usage),
    }
}

/// Read stdin lines on a helper thread; each line wakes the loop.
pub fn spawn_prompt(waker: Arc<Waker>) -> Receiver<String> {
    let (tx, rx) = sync_channel(16);
    let _ = std::thread::Builder::new()
        .name("prompt".into())
        .spawn(move || {
            use std::io::BufRead;
            say!("{USAGE}");
            let stdin = std::io::stdin();
            show_prompt();
            loop {
                let mut line = String::new();
                match stdin.lock().read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if tx.send(line).is_err() {
                    return;
                }
                let _ = waker.wake();
            }
        });
    rx
}

pub fn show_prompt() {
    use std::io::Write;
    let _ = write!(std::io::stderr(), ">>> ");
}

pub fn show(p: PromptOut) {
    match p {
        PromptOut::Say(text) => say!("{text}"),
        PromptOut::Report(json) => match Report::from_json_line(&json) {
            Ok(r) => {
                let _ = r.write_human(&mut crate::util::out::stdout());
            }
            Err(_) => out!("{json}"),
        },
        PromptOut::Status(agents) => print_status(&agents),
    }
}

pub fn print_status(agents: &[AgentInfo]) {
    let live = agents.iter().filter(|a| a.live).count();
    out!("{live} live agents ({} known)", agents.len());
    out!(
        "{:>3}  {:<40} {:<12} {:<6} {:>10}",
        "#",
        "address",
        "zone",
        "state",
        "seen"
    );
    for (i, a) in agents.iter().enumerate() {
        let state = match (a.live, a.busy) {
            (false, _) => "lost",
            (true, true) => "busy",
            (true, false) => "idle",
        };
        out!(
            "{i:>3}  {:<40} {:<12} {state:<6} {:>8}ms",
            a.advertise.to_string(),
            a.zone,
            a.seen_ms_ago
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_lines() {
        assert_eq!(parse_prompt("  "), Ok(None));
        assert_eq!(parse_prompt("status"), Ok(Some(Msg::StatusRequest)));
        let Ok(Some(Msg::RunRequest(r))) = parse_prompt("run 4 10 multicast") else {
            panic!()
        };
        assert_eq!(
            (r.peers, r.msgs, r.transport),
            (4, 10, Transport::Multicast)
        );
        assert_eq!(
            parse_prompt("run 4 x"),
            Err(PromptError::NotANumber {
                what: "N_MSGS",
                got: "x".into()
            })
        );
        let Ok(Some(Msg::RunRequest(r))) = parse_prompt("run 4 10 causal multicast") else {
            panic!()
        };
        assert_eq!(
            (r.transport, r.order),
            (Transport::Multicast, Order::Causal)
        );
        assert_eq!(r.repair, None, "the mode's default");
        let e = parse_prompt("run 4 10 carrier-pigeon")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("carrier-pigeon") && e.contains("sequencer"),
            "{e}"
        );
        assert_eq!(
            parse_prompt("run 4 10 fifo fanout extra"),
            Err(PromptError::Usage)
        );
        assert_eq!(PromptError::Usage.to_string(), USAGE);
        assert!(parse_prompt("rm -rf /").is_err());
    }
}
