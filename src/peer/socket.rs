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
//! * source-specific multicast ([`Ssm`]): instead of the any-source join, one (S,G) join per
//!   peer's address (IP_ADD_SOURCE_MEMBERSHIP, MCAST_JOIN_SOURCE_GROUP for IPv6), so the kernel
//!   drops group datagrams from any other source; the host then sends IGMPv3 / MLDv2 reports.
//!   IPv4 datagrams leave from this peer's own listed address (IP_MULTICAST_IF set to it; on
//!   the loopback each lab peer has its own 127.a.b.x), so the others' (S,G) joins match.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use nix::sys::socket::{self, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

mod ssm;
pub use ssm::{is_ssm_group, Ssm};
use ssm::{join_sources_v4, join_sources_v6, ssm_refused};

/// Buffer budget when nothing is known about the run (tests, tools): 4 MiB.
pub const DEFAULT_BUFFER: usize = MIN_BUFFER;
/// Bounds of [`buffer_for`]: never less than the old fixed 4 MiB, never more than 256 MiB.
pub const MIN_BUFFER: usize = 4 << 20;
pub const MAX_BUFFER: usize = 256 << 20;
/// Datagrams per sender a receiver must be able to hold queued when everyone bursts
/// (`--interval 0`): a receiver that is descheduled while N senders keep sending.
pub const BURST: usize = 256;
/// What a queued datagram costs beyond its payload: skb truesize is the payload plus ~768
/// bytes on the loopback (sk_buff, shared info, headers, slab rounding).
pub const SKB_OVERHEAD: usize = 768;
/// How long a receiver may fall behind (not scheduled on a busy host) without losing
/// datagrams, when senders pace themselves.
const STALL: Duration = Duration::from_millis(200);

/// The socket buffer (in bytes of skb truesize, the unit the kernel charges) a peer of a run
/// of `peers` peers sending `size`-byte DATA every `interval` (shortest gap; zero = back to
/// back) should have: room for `BURST` datagrams from every peer when bursting, or for what
/// arrives in `STALL` when paced (at least 16 per peer), clamped to `MIN_BUFFER..=MAX_BUFFER`.
pub fn buffer_for(peers: u16, size: usize, interval: Duration) -> usize {
    let per_peer = if interval.is_zero() {
        BURST
    } else {
        let n = STALL.as_nanos().div_ceil(interval.as_nanos());
        usize::try_from(n).unwrap_or(BURST).clamp(16, BURST)
    };
    let truesize = size.saturating_add(SKB_OVERHEAD);
    usize::from(peers.max(1))
        .saturating_mul(per_peer)
        .saturating_mul(truesize)
        .clamp(MIN_BUFFER, MAX_BUFFER)
}

/// `MPCOMM_SOCKET_BUFFER=BYTES` replaces [`buffer_for`]'s budget (clamped to 4 KiB..=1 GiB):
/// to measure loss attribution with small buffers, or to try a size.
pub const BUFFER_ENV: &str = "MPCOMM_SOCKET_BUFFER";

/// The budget `MPCOMM_SOCKET_BUFFER` asks for, if it is set to a number.
pub fn buffer_from_env() -> Option<usize> {
    let v = std::env::var(BUFFER_ENV).ok()?;
    Some(v.trim().parse::<usize>().ok()?.clamp(4 << 10, 1 << 30))
}

pub struct Opened {
    pub socket: std::net::UdpSocket,
    /// SO_TIMESTAMPNS is on: receive times come from the kernel.
    pub kernel_stamps: bool,
    /// The receive buffer the kernel actually granted (as SO_RCVBUF reads it back: the
    /// truesize budget, which is twice the value set).
    pub rcvbuf: usize,
    /// The receive buffer asked for (same unit as `rcvbuf`).
    pub asked: usize,
    /// SO_RCVBUFFORCE worked (we have CAP_NET_ADMIN): net.core.rmem_max did not apply.
    pub forced: bool,
    /// SO_RXQ_OVFL is on: datagrams carry the socket's drop count (see `peer::batch`).
    pub drop_counts: bool,
    /// IP_RECVTTL / IPV6_RECVHOPLIMIT is on: datagrams carry the TTL they arrived with.
    pub hop_counts: bool,
}

impl Opened {
    /// The kernel granted less than asked (net.core.rmem_max, without CAP_NET_ADMIN).
    pub fn capped(&self) -> bool {
        self.rcvbuf < self.asked
    }
}

/// Set SO_RCVBUF and SO_SNDBUF so the kernel's budget (twice the value set, see socket(7))
/// is `bytes`: with SO_*BUFFORCE when allowed (root), past net.core.{r,w}mem_max; otherwise
/// the plain options, which the kernel caps there. Returns whether the force worked.
fn size_buffers(s: &Socket, bytes: usize) -> bool {
    let half = bytes.div_ceil(2);
    let forced = socket::setsockopt(s, sockopt::RcvBufForce, &half).is_ok();
    if !forced {
        let _ = s.set_recv_buffer_size(half);
    }
    if socket::setsockopt(s, sockopt::SndBufForce, &half).is_err() {
        let _ = s.set_send_buffer_size(half);
    }
    forced
}

fn new_udp(addr: &SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(*addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    if addr.is_ipv6() {
        // One family per run: no IPv4-mapped surprises.
        s.set_only_v6(true)?;
    }
    Ok(s)
}

/// The TTL / hop limit of unicast datagrams (fan-out DATA, one-peer messages), set on every
/// socket rather than left to `net.ipv4.ip_default_ttl`: hop distance is this minus the TTL
/// a receiver sees, so the sender must know it.
pub const UNICAST_TTL: u8 = 64;

/// Ask for the received TTL (IPv4) or hop limit (IPv6) of every datagram as a control message.
fn receive_hop_counts(s: &Socket, ipv6: bool) -> bool {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVTTL)
    };
    let on: libc::c_int = 1;
    use std::os::fd::AsRawFd;
    // SAFETY: a live socket, an int option of the advertised size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

fn finish(s: Socket, buffer: usize) -> io::Result<Opened> {
    let forced = size_buffers(&s, buffer);
    let rcvbuf = s.recv_buffer_size()?;
    let kernel_stamps = socket::setsockopt(&s, sockopt::ReceiveTimestampns, &true).is_ok();
    let drop_counts = socket::setsockopt(&s, sockopt::RxqOvfl, &1).is_ok();
    let ipv6 = s.local_addr()?.is_ipv6();
    if ipv6 {
        s.set_unicast_hops_v6(u32::from(UNICAST_TTL))?;
    } else {
        s.set_ttl(u32::from(UNICAST_TTL))?;
    }
    let hop_counts = receive_hop_counts(&s, ipv6);
    Ok(Opened {
        socket: s.into(),
        kernel_stamps,
        rcvbuf,
        asked: buffer,
        forced,
        drop_counts,
        hop_counts,
    })
}

/// The number of datagrams the kernel dropped on `fd` so far (SO_MEMINFO's
/// `SK_MEMINFO_DROPS`, the counter SO_RXQ_OVFL reports too), read without a datagram; `None`
/// if the kernel lacks SO_MEMINFO (before 4.12).
pub fn drops_now(fd: std::os::fd::RawFd) -> Option<u32> {
    const SO_MEMINFO: libc::c_int = 55;
    const VARS: usize = 9; // SK_MEMINFO_VARS on every kernel that has SO_MEMINFO
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is a live buffer of `len` bytes; the kernel writes at most that.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let drops = libc::SK_MEMINFO_DROPS as usize;
    (rc == 0 && len as usize >= VARS * 4).then(|| info[drops])
}

/// A fan-out socket bound to this peer's own address, with the default buffers.
pub fn open_fanout(own: SocketAddr) -> io::Result<Opened> {
    open_fanout_sized(own, DEFAULT_BUFFER)
}

/// A fan-out socket bound to this peer's own address, its buffers sized for `buffer` bytes
/// (see [`buffer_for`]).
pub fn open_fanout_sized(own: SocketAddr, buffer: usize) -> io::Result<Opened> {
    let s = new_udp(&own)?;
    s.bind(&own.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind {own}: {e} (is another peer or program using it?)"),
        )
    })?;
    finish(s, buffer)
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
pub fn open_multicast(
    group: SocketAddrV4,
    iface: Ipv4Addr,
    ttl: u32,
    buffer: usize,
) -> io::Result<Opened> {
    open_multicast_v4(group, iface, ttl, buffer, None)
}

/// [`open_multicast`], any-source or (with `ssm`) source-specific.
fn open_multicast_v4(
    group: SocketAddrV4,
    iface: Ipv4Addr,
    ttl: u32,
    buffer: usize,
    ssm: Option<Ssm>,
) -> io::Result<Opened> {
    if !group.ip().is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a multicast address: use 224.0.0.0/4, e.g. 239.255.77.77",
                group.ip()
            ),
        ));
    }
    if ssm.is_some() && !is_ssm_group(IpAddr::V4(*group.ip())) {
        return Err(ssm_refused(IpAddr::V4(*group.ip())));
    }
    let s = bind_group(group.into())?;
    match ssm {
        None => s.join_multicast_v4(group.ip(), &iface).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot join {} on interface {iface}: {e} (check --iface)",
                    group.ip()
                ),
            )
        })?,
        Some(ssm) => join_sources_v4(&s, *group.ip(), iface, ssm.sources)?,
    }
    // SSM: the source of our datagrams must be our listed address, which the others joined.
    let send_from = match ssm.map(|s| s.own) {
        Some(IpAddr::V4(own)) => own,
        _ => iface,
    };
    s.set_multicast_if_v4(&send_from).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot send multicast from {send_from}: {e}"),
        )
    })?;
    s.set_multicast_loop_v4(true)?;
    s.set_multicast_ttl_v4(ttl)?;
    s.set_multicast_all_v4(false)?;
    finish(s, buffer)
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

    /// Open the socket: IPv4 as [`open_multicast`], IPv6 as [`open_multicast_v6`], its
    /// buffers sized for `buffer` bytes; source-specific with `ssm`.
    pub fn open(&self, hops: u32, buffer: usize, ssm: Option<Ssm>) -> io::Result<Opened> {
        match *self {
            Membership::V4 { group, iface } => open_multicast_v4(group, iface, hops, buffer, ssm),
            Membership::V6 { group, ifindex } => {
                open_multicast_v6_from(group, ifindex, hops, buffer, ssm)
            }
        }
    }
}

/// An IPv6 multicast socket: member of `group` on interface `ifindex`.
pub fn open_multicast_v6(
    group: SocketAddrV6,
    ifindex: u32,
    hops: u32,
    buffer: usize,
) -> io::Result<Opened> {
    open_multicast_v6_from(group, ifindex, hops, buffer, None)
}

/// [`open_multicast_v6`], any-source or (with `ssm`) source-specific. The kernel picks the
/// source address of IPv6 datagrams (the interface's, by RFC 6724 rules): a host with one
/// global or ULA address on the interface sends from it.
fn open_multicast_v6_from(
    group: SocketAddrV6,
    ifindex: u32,
    hops: u32,
    buffer: usize,
    ssm: Option<Ssm>,
) -> io::Result<Opened> {
    if !group.ip().is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a multicast address: use ff00::/8, e.g. ff12::7777",
                group.ip()
            ),
        ));
    }
    if ssm.is_some() && !is_ssm_group(IpAddr::V6(*group.ip())) {
        return Err(ssm_refused(IpAddr::V6(*group.ip())));
    }
    let group = SocketAddrV6::new(*group.ip(), group.port(), 0, ifindex);
    let s = bind_group(group.into())?;
    match ssm {
        None => s.join_multicast_v6(group.ip(), ifindex).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot join {} on interface index {ifindex}: {e} (check --iface)",
                    group.ip()
                ),
            )
        })?,
        Some(ssm) => join_sources_v6(&s, *group.ip(), ifindex, ssm.sources)?,
    }
    s.set_multicast_if_v6(ifindex)?;
    s.set_multicast_loop_v6(true)?;
    s.set_multicast_hops_v6(hops)?;
    s.set_multicast_all_v6(false)?;
    finish(s, buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unicast_group_address_is_refused_clearly() {
        let e = open_multicast(
            "10.0.0.1:5000".parse().unwrap(),
            Ipv4Addr::LOCALHOST,
            1,
            DEFAULT_BUFFER,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("not a multicast address"));
        let e = open_multicast_v6("[fe80::1]:5000".parse().unwrap(), 1, 1, DEFAULT_BUFFER)
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a multicast address"));
    }

    #[test]
    fn buffers_grow_with_peers_and_burst_and_stay_bounded() {
        let burst = Duration::ZERO;
        // Few peers: the old fixed 4 MiB floor.
        assert_eq!(buffer_for(2, 64, burst), MIN_BUFFER);
        // 64 peers bursting 64-byte DATA: 64 × 256 × (64 + 768) bytes.
        assert_eq!(buffer_for(64, 64, burst), 64 * 256 * 832);
        // Bigger datagrams, more room; paced senders need less than bursting ones.
        assert!(buffer_for(64, 1400, burst) > buffer_for(64, 64, burst));
        let paced = buffer_for(256, 1400, Duration::from_millis(10));
        assert_eq!(paced, 256 * 20 * (1400 + 768));
        assert!(paced < buffer_for(256, 1400, burst));
        // Very slow senders: at least 16 datagrams per peer, then the floor.
        assert_eq!(
            buffer_for(4096, 64, Duration::from_secs(10)),
            4096 * 16 * 832
        );
        // Huge runs are capped; nothing overflows.
        assert_eq!(buffer_for(u16::MAX, 65_000, burst), MAX_BUFFER);
        assert_eq!(buffer_for(u16::MAX, usize::MAX, burst), MAX_BUFFER);
        assert_eq!(buffer_for(0, 0, burst), MIN_BUFFER);
    }

    #[test]
    fn the_granted_buffer_is_read_back_and_drops_are_readable() {
        let o = open_fanout_sized("127.0.0.1:0".parse().unwrap(), 8 << 20).unwrap();
        assert_eq!(o.asked, 8 << 20);
        // Granted in full (forced, or rmem_max is large enough), or capped and said so.
        assert_eq!(o.capped(), o.rcvbuf < 8 << 20);
        if o.forced {
            assert!(o.rcvbuf >= 8 << 20, "{}", o.rcvbuf);
        }
        use std::os::fd::AsRawFd;
        if let Some(d) = drops_now(o.socket.as_raw_fd()) {
            assert_eq!(d, 0, "a fresh socket has dropped nothing");
        }
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
