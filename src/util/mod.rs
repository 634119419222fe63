//! Small pieces shared by every part.

pub mod clock;
pub mod duration;
pub mod loglimit;
