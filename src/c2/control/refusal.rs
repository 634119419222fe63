//! Why the controller refuses a request: small enums whose text is what the requester reads.

use crate::c2::runs::PlanError;
use crate::wan::{Profile, WanError};

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("the controller is shutting down")]
    ShuttingDown,
    #[error("run {0:016x} is in progress: one run at a time, retry when it is reported")]
    RunInProgress(u64),
    #[error("an exit is already in progress")]
    ExitInProgress,
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("check {0:016x} is in progress: one check at a time")]
    CheckInProgress(u64),
    #[error("{0}")]
    CheckBounds(crate::c2::preflight::CheckBoundsError),
    #[error("the check needs {want} idle agents: {idle} of {live} live agents are idle")]
    CheckAgents {
        want: usize,
        idle: usize,
        live: usize,
    },
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ProfileError {
    #[error("--wan {0:?}: give a profile name (e.g. lan, gcp8), not a path")]
    NotAName(String),
    #[error("--wan {name}: {source}")]
    Load { name: String, source: WanError },
}

/// The WAN profile of a request: only names the agents can resolve too (shipped profiles, or a
/// file name both sides have), never a path.
pub fn load_profile(wan: &str) -> Result<Option<Profile>, ProfileError> {
    if wan.is_empty() {
        return Ok(None);
    }
    if !wan
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err(ProfileError::NotAName(wan.to_owned()));
    }
    Profile::load(wan)
        .map(Some)
        .map_err(|source| ProfileError::Load {
            name: wan.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_by_name_only() {
        assert!(load_profile("").unwrap().is_none());
        assert!(load_profile("lan").unwrap().is_some());
        assert_eq!(
            load_profile("../etc/x").unwrap_err(),
            ProfileError::NotAName("../etc/x".into())
        );
        let e = load_profile("no-such-profile").unwrap_err();
        assert!(matches!(e, ProfileError::Load { .. }), "{e}");
        assert!(e.to_string().starts_with("--wan no-such-profile: "), "{e}");
    }
}
