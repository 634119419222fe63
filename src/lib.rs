//! mpcomm: make the message-ordering problem of uncoordinated multicast visible, measurable and
//! fixable.
//!
//! * [`wire`]: every byte format (datagrams, delivery logs, TCP frames), hand-written and total.
//! * [`peer`]: one peer — a sans-IO state machine ([`peer::machine`]) and its mio driver.
//! * [`compare`]: the comparator — ordering, loss and latency metrics over delivery logs, as a
//!   service or offline, and the aggregated report.
//! * [`export`]: delivery logs in other tools' formats (ShiViz).
//! * [`check`]: the preflight — does unicast and multicast get through between the hosts?
//! * [`bench`]: both transports side by side over a list of N (`mpcomm bench`).
//! * [`lab`]: a whole experiment on this machine (loopback or network namespaces).
//! * [`wan`]: the emulated wide-area network (zones, one-way delays, jitter, loss).
//! * [`net`]: the connection layer of the TCP services (acceptor, connection table, framing).
//! * [`netns`]: throw-away hosts in network namespaces joined by a bridge.
//! * [`c2`]: command and control across machines (agent, controller, control CLI).
//! * [`viz`]: a run as one self-contained HTML page (space-time diagram, order strips, latency).
//! * [`cli`]: the command line (every clap type), mapped into the plain configs above.
//! * [`util`]: small shared pieces (durations with units, clocks, output that never panics,
//!   supervised children).

// First: its `say!`/`out!` macros are used by every module below.
#[macro_use]
pub mod util;
pub mod bench;
pub mod c2;
pub mod check;
pub mod cli;
pub mod compare;
pub mod export;
pub mod lab;
pub mod net;
pub mod netns;
pub mod peer;
pub mod viz;
pub mod wan;
pub mod wire;
