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
//! * IPv6 works the same way: fan-out between IPv6 addresses, or an ff0x:: group joined on an
//!   interface given by index (IPV6_MULTICAST_IF, IPV6_MULTICAST_LOOP, IPV6_MULTICAST_HOPS,
//!   IPV6_MULTICAST_ALL off).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

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
    if addr.is_ipv6() {
        // One family per run: no IPv4-mapped surprises.
        s.set_only_v6(true)?;
    }
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

/// A socket bound to a group's address and port, shared with the other members on this host.
fn bind_group(addr: SocketAddr) -> io::Result<Socket> {
    let s = new_udp(&addr)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into()).map_err(|e| {
        io::Error::new(e.kind(), format!("cannot bind multicast group {addr}: {e}"))
    })?;
    Ok(s)
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
    let s = bind_group(group.into())?;
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

/// Where a multicast socket joins and sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// An IPv4 group on the interface with this address.
    V4 {
        group: SocketAddrV4,
        iface: Ipv4Addr,
    },
    /// An IPv6 group on the interface with this index.
    V6 { group: SocketAddrV6, ifindex: u32 },
}

impl Membership {
    /// Where datagrams to the group are sent (an IPv6 group carries the interface as scope).
    pub fn destination(&self) -> SocketAddr {
        match *self {
            Membership::V4 { group, .. } => group.into(),
            Membership::V6 { group, ifindex } => {
                SocketAddrV6::new(*group.ip(), group.port(), 0, ifindex).into()
            }
        }
    }

    /// Open the socket: IPv4 as [`open_multicast`], IPv6 as [`open_multicast_v6`].
    pub fn open(&self, hops: u32) -> io::Result<Opened> {
        match *self {
            Membership::V4 { group, iface } => open_multicast(group, iface, hops),
            Membership::V6 { group, ifindex } => open_multicast_v6(group, ifindex, hops),
        }
    }
}

/// An IPv6 multicast socket: member of `group` on interface `ifindex`.
pub fn open_multicast_v6(group: SocketAddrV6, ifindex: u32, hops: u32) -> io::Result<Opened> {
    if !group.ip().is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a multicast address: use ff00::/8, e.g. ff12::7777",
                group.ip()
            ),
        ));
    }
    let group = SocketAddrV6::new(*group.ip(), group.port(), 0, ifindex);
    let s = bind_group(group.into())?;
    s.join_multicast_v6(group.ip(), ifindex).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot join {} on interface index {ifindex}: {e} (check --iface)",
                group.ip()
            ),
        )
    })?;
    s.set_multicast_if_v6(ifindex)?;
    s.set_multicast_loop_v6(true)?;
    s.set_multicast_hops_v6(hops)?;
    s.set_multicast_all_v6(false)?;
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
        let e = open_multicast_v6("[fe80::1]:5000".parse().unwrap(), 1, 1)
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a multicast address"));
    }

    #[test]
    fn ipv6_fanout_sockets_bind_on_the_loopback() {
        match open_fanout("[::1]:0".parse().unwrap()) {
            Ok(o) => assert!(o.socket.local_addr().unwrap().is_ipv6()),
            // A kernel without IPv6 says so; nothing to test then.
            Err(e) => eprintln!("SKIP: no IPv6 on this host: {e}"),
        }
    }
}
