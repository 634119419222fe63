//! Small pieces shared by every part.

pub mod clock;
pub mod duration;
pub mod loglimit;
#[macro_use]
pub mod out;
pub mod run_id;
pub mod supervise;
