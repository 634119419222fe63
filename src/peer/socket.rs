//! Sockets for the two transports (socket2 → std → mio). Receiving (with the kernel timestamps
//! enabled here) is in [`super::batch`].
//!
//! * fan-out: one UDP socket bound to this peer's own listed address; a message goes to
//!   every listed peer (ourselves included, so we receive our own messages too) in one `sendmmsg`.
//! * multicast: one UDP socket bound to the group address and port (so unicast to that port does
//!   not reach it), member of the group on `iface`, sending with IP_MULTICAST_IF = `iface`,
//!   loopback on (we hear ourselves), IP_MULTICAST_ALL off (other groups on this host, from
//!   parallel runs, stay out). Several peers on one host share the port via SO_REUSEADDR; every
//!   member socket gets its own copy of each group datagram.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use nix::sys::socket::{self, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

/// Receive buffer we ask for: a burst of 8 peers × back-to-back sends must not overflow it.
pub const RCVBUF_BYTES: usize = 4 << 20;

pub struct Opened {
    pub socket: std::net::UdpSocket,
    /// SO_TIMESTAMPNS is on: receive times come from the kernel.
    pub kernel_stamps: bool,
    /// The receive buffer the kernel actually granted.
    pub rcvbuf: usize,
}

fn new_udp(addr: &SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(*addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    // Ask for a large buffer; the kernel may cap it at net.core.rmem_max (read back below).
    let _ = s.set_recv_buffer_size(RCVBUF_BYTES);
    let _ = s.set_send_buffer_size(RCVBUF_BYTES);
    Ok(s)
}

fn finish(s: Socket) -> io::Result<Opened> {
    let rcvbuf = s.recv_buffer_size()?;
    let kernel_stamps = socket::setsockopt(&s, sockopt::ReceiveTimestampns, &true).is_ok();
    Ok(Opened {
        socket: s.into(),
        kernel_stamps,
        rcvbuf,
    })
}

/// A fan-out socket bound to this peer's own address.
pub fn open_fanout(own: SocketAddr) -> io::Result<Opened> {
    let s = new_udp(&own)?;
    s.bind(&own.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind {own}: {e} (is another peer or program using it?)"),
        )
    })?;
    finish(s)
}

/// A multicast socket: member of `group` on the interface with address `iface`.
pub fn open_multicast(group: SocketAddrV4, iface: Ipv4Addr, ttl: u32) -> io::Result<Opened> {
    if !group.ip().is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a multicast address: use 224.0.0.0/4, e.g. 239.255.77.77",
                group.ip()
            ),
        ));
    }
    let addr = SocketAddr::V4(group);
    let s = new_udp(&addr)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind multicast group {group}: {e}"),
        )
    })?;
    s.join_multicast_v4(group.ip(), &iface).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot join {} on interface {iface}: {e} (check --iface)",
                group.ip()
            ),
        )
    })?;
    s.set_multicast_if_v4(&iface)?;
    s.set_multicast_loop_v4(true)?;
    s.set_multicast_ttl_v4(ttl)?;
    s.set_multicast_all_v4(false)?;
    finish(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unicast_group_address_is_refused_clearly() {
        let e = open_multicast("10.0.0.1:5000".parse().unwrap(), Ipv4Addr::LOCALHOST, 1)
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a multicast address"));
    }
}
