//! The controller's logic, apart from its I/O: [`core::Core`] takes connection events,
//! messages, comparator reports and prompt lines with `now`, and answers with an
//! [`outbox::Outbox`] and a deadline from [`timers::Timers`]. `c2::controller` is the thin mio
//! driver around it; [`prompt`] is the `>>>` UI; [`config::ServeConfig`] is what both take.
//!
//! * [`link`]: one connection's state and its timeouts, heartbeats and silence limit.
//! * [`refusal`]: why a request is refused, as enums.

pub mod config;
pub mod core;
pub mod link;
pub mod outbox;
pub mod prompt;
pub mod refusal;
pub mod timers;

#[cfg(test)]
mod check_tests;
#[cfg(test)]
mod tests;

pub use self::config::ServeConfig;
pub use self::core::{Core, Requester};
pub use self::outbox::{Out, PromptOut};
