//! Whether the agent starts a RUN: a plain function of the RUN and what the agent is running,
//! so every refusal is testable without a socket or a child. The decoder let the RUN through
//! because it was well-formed; the bounds are checked here, and a refusal travels back as
//! RUN_FINISHED with a [`RefusalCode`] the controller can act on and a text for humans.

use crate::c2::proto::{BoundsError, Msg, RefusalCode, RunSpec};

/// Why the agent does not start a run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("agent busy with run {0:016x}: one run at a time")]
    Busy(u64),
    #[error("run refused: {0}")]
    OutOfBounds(#[from] BoundsError),
    /// The peer could not be started (the error chain, as text: it comes from the OS).
    #[error("cannot start the peer: {0}")]
    CannotStart(String),
}

impl Refusal {
    pub fn code(&self) -> RefusalCode {
        match self {
            Refusal::Busy(_) => RefusalCode::Busy,
            Refusal::OutOfBounds(_) => RefusalCode::OutOfBounds,
            Refusal::CannotStart(_) => RefusalCode::CannotStart,
        }
    }

    /// The RUN_FINISHED that answers `run_id` (its `running` is stamped when it is sent).
    pub fn into_msg(self, run_id: u64) -> Msg {
        Msg::RunFinished {
            run_id,
            ok: false,
            refused: Some(self.code()),
            detail: self.to_string(),
            running: None,
        }
    }
}

/// Start `spec`, or say why not: one run at a time, and only within the documented bounds.
pub fn admit(spec: &RunSpec, running: Option<u64>) -> Result<(), Refusal> {
    if let Some(busy) = running {
        return Err(Refusal::Busy(busy));
    }
    spec.check()?;
    Ok(())
}
