//! Small pieces shared by every part.

pub mod clock;
pub mod duration;
#[macro_use]
pub mod out;
pub mod supervise;
