//! The connection layer both TCP services (the comparator and the C2 controller) stand on:
//! the same mechanisms, written once.
//!
//! * [`acceptor`]: a listener accepted from in bounded rounds, that comes back by itself after
//!   an `accept` failure such as running out of descriptors (the pending connection raises no
//!   new edge).
//! * [`table`]: the connections — a token slab, per-source counts keyed by [`source_key`],
//!   and the set of connections still to prove themselves, evicted oldest first.
//! * [`framing`]: sans-IO frame reassembly with caps on the header, bounded reads per
//!   wake-up, and a capped write queue.
//! * [`deadlines`]: a timer heap with lazy deletion, so a loop finds its next deadline
//!   without scanning every connection.
//! * [`stop`]: the one handle that ends a service loop from another thread.
//!
//! Policy stays with the services: what counts as "still proving itself", what to say to a
//! refused client, which deadline means what.

pub mod acceptor;
pub mod deadlines;
pub mod framing;
pub mod stop;
pub mod table;

pub use acceptor::Acceptor;
pub use deadlines::Deadlines;
pub use stop::StopHandle;
pub use table::{Admit, ConnTable, Limits};

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Connections the kernel may queue before we accept them (std and mio use 128): a burst of
/// connects (a fleet uploading or reconnecting at once) is queued rather than its SYNs dropped,
/// which would cost each dropped client a 1 s retransmission.
pub const LISTEN_BACKLOG: i32 = 1024;

/// A non-blocking listening socket on `addr` with [`LISTEN_BACKLOG`] and `SO_REUSEADDR`.
pub fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// The address a per-source cap counts by: an IPv4 address (also when v4-mapped), or the /64
/// of an IPv6 address (one host usually holds a whole /64, so counting single addresses
/// would let it take any number of slots).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// True for the `accept` errors that mean "no descriptor or memory right now": they pass
/// when connections close, so the listener is kept and tried again.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_v4_addresses_or_v6_slash_64s() {
        let k = |s: &str| source_key(s.parse().unwrap()).to_string();
        assert_eq!(k("192.0.2.7"), "192.0.2.7");
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
    }

    #[test]
    fn descriptor_exhaustion_is_recognised() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
