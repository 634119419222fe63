//! Throw-away hosts in network namespaces, joined by one Linux bridge.
//!
//! A [`Testbed`] of N hosts is N + 1 network namespaces named `mpc-<pid>-<rand>-h<i>` and
//! `mpc-<pid>-<rand>-sw`. The switch namespace `…-sw` holds the bridge `br0` (multicast snooping
//! off, so every multicast frame is flooded to every port and no IGMP querier is needed) and one
//! veth end `h<i>` per host; the other end is `eth0` inside host i, with `10.X.Y.(i+1)/24`,
//! `lo` up and a route for `224.0.0.0/4` via `eth0`. Nothing is created in the namespace of the
//! caller: no link, no address, no NAT, no default route, so traffic can never leave the testbed
//! and parallel runs cannot collide (the prefix embeds the creator's pid and a random part). The
//! bridge has one address, `10.X.Y.254`, where the caller can listen from inside the testbed
//! ([`Testbed::tcp_listener`], e.g. for the comparator the peers upload to).
//!
//! No ARP: every MAC is derived from its address (`10.X.Y.Z` → `02:00:0a:XX:YY:ZZ`) and every
//! neighbour entry a host or the bridge needs is made permanent at build time (multicast groups
//! with [`Testbed::pin_multicast`]); hosts have no IPv6 address. The kernel's ARP table is one
//! for all namespaces and allows only `gc_thresh3` (1024) dynamic entries; fan-out among 32
//! hosts alone needs 992 (see `static_neighbours` in testbed.rs).
//!
//! Two ways to get there, chosen by [`support`]:
//!
//! * [`Mode::Root`]: iproute2 directly (`ip netns add`, `ip -n NS link add … type veth`).
//! * [`Mode::UserNamespace`] (no root needed): `Testbed::create` starts one helper,
//!   `unshare -rnm sh`, which mounts a tmpfs on `/run` in its own mount namespace so `ip netns`
//!   has a private `/run/netns`. Every `ip` command of the testbed, and every process started
//!   with [`Testbed::command`], joins the helper's user and mount namespaces (`setns` in
//!   `pre_exec`) and then the host's network namespace. The caller does not need to re-execute
//!   itself; the same API works in both modes.
//!
//! Cleanup does not depend on signal handlers (the caller may install its own `ctrlc` handler):
//! every testbed has a guard process in its own process group — in user-namespace mode the helper
//! itself — that waits for a line or EOF on a pipe from the creator. [`Testbed::teardown`] (also
//! run by `Drop`, hence on panic) writes that line; if the creator dies in any way (Ctrl-C,
//! SIGTERM, SIGKILL, abort) the pipe closes. Either way the guard kills every process inside the
//! testbed's namespaces and deletes them. As root, [`Testbed::create`] also deletes namespaces
//! of creators that no longer exist ([`cleanup_stale`]), in case a guard was killed too. In
//! user-namespace mode the kernel frees everything once the helper and the processes inside exit.
//!
//! Apart from testbeds, [`enter_private_loopback`] moves the calling process itself into a fresh
//! namespace whose loopback carries IPv6 multicast (what `lab --ipv6` needs; see `private.rs`).
//!
//! Set `MPCOMM_NETNS=root` or `MPCOMM_NETNS=userns` to force a mode (e.g. to test the
//! user-namespace path as root).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mpcomm::netns::Testbed;
//! let tb = Testbed::create(4)?; // Err(Unsupported(reason)) where neither mode works
//! let comparator = tb.tcp_listener(0)?; // reachable from every host
//! let mut peer = tb
//!     .command(1, "mpcomm")
//!     .arg("peer")
//!     .arg(format!("--comparator={}", comparator.local_addr()?))
//!     .spawn()?; // runs with host 1's address, tb.host_addr(1), on tb.iface(1)
//! peer.wait()?;
//! tb.teardown()?; // or just drop it
//! # Ok(())
//! # }
//! ```

mod guard;
pub mod private;
mod service;
mod support;
mod testbed;

pub use private::{enter_private_loopback, loopback_carries_ipv6_multicast};
pub use support::{find_tool, support, support_of, Mode};
pub use testbed::{cleanup_stale, Testbed, PREFIX};

/// Why a testbed could not be built or removed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespaces are not available here: {0}")]
    Unsupported(String),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "enter_private_loopback (user namespace) must be called before any thread starts: \
         unshare(CLONE_NEWUSER) refuses a multi-threaded process (EINVAL)"
    )]
    Threaded,
    #[error("a testbed needs 1 to 250 hosts, not {0}")]
    Hosts(usize),
    #[error(
        "teardown left {0:?} behind: remove them with `ip netns del NAME` (as root) and report \
         this as a bug"
    )]
    Leftover(Vec<String>),
}

impl NetnsError {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        NetnsError::Io {
            what: what.into(),
            source,
        }
    }
}
