//! Batched datagram I/O: `recvmmsg` and `sendmmsg` over header, iovec, address and control
//! arrays allocated once per driver, so the steady-state path allocates nothing and one syscall
//! moves many datagrams.
//!
//! Falls back to one `recvmsg` / `sendmsg` per datagram when the kernel lacks the batched calls
//! (ENOSYS), or when `MPCOMM_NO_MMSG=1` asks for it (to measure what batching buys).
//!
//! The arrays hold raw pointers into the struct's own heap buffers (`Vec`s that are never
//! resized), so moving a `RecvBatch`/`SendBatch` keeps them valid.

use std::io;
use std::mem;
use std::os::fd::RawFd;
use std::ptr;

mod send;
pub use send::{SendBatch, Sent};

/// Datagrams per `recvmmsg` call.
pub const RECV_SLOTS: usize = 32;
/// `MPCOMM_NO_MMSG=1` (any value but empty or `0`): one syscall per datagram.
pub const NO_MMSG_ENV: &str = "MPCOMM_NO_MMSG";
/// Stride of the receive slots: any UDP payload fits, so nothing is truncated.
const SLOT_LEN: usize = 1 << 16;

/// True unless `MPCOMM_NO_MMSG` asks for one syscall per datagram.
pub fn mmsg_from_env() -> bool {
    std::env::var_os(NO_MMSG_ENV).is_none_or(|v| v.is_empty() || v == "0")
}

/// Room for every control message a datagram may carry: its SO_TIMESTAMPNS stamp, its
/// socket's SO_RXQ_OVFL drop count and its received TTL (IP_TTL) or hop limit (IPV6_HOPLIMIT).
fn cmsg_space() -> usize {
    // SAFETY: pure size computations.
    unsafe {
        libc::CMSG_SPACE(mem::size_of::<libc::timespec>() as u32) as usize
            + libc::CMSG_SPACE(mem::size_of::<u32>() as u32) as usize
            + libc::CMSG_SPACE(mem::size_of::<libc::c_int>() as u32) as usize
    }
}

/// A zeroed header (also zeroes glibc's padding fields).
fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data; all-zero is a valid (empty) header.
    unsafe { mem::zeroed() }
}

pub struct RecvBatch {
    bufs: Vec<u8>,
    iovs: Vec<libc::iovec>,
    /// u64 keeps the control buffers aligned for `cmsghdr`.
    cmsgs: Vec<u64>,
    hdrs: Vec<libc::mmsghdr>,
    cmsg_space: usize,
    batched: bool,
}

// SAFETY: the raw pointers only point into buffers this struct owns.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `batched = false` forces one `recvmsg` per datagram.
    pub fn new(batched: bool) -> RecvBatch {
        let space = cmsg_space();
        let mut r = RecvBatch {
            bufs: vec![0; RECV_SLOTS * SLOT_LEN],
            iovs: Vec::with_capacity(RECV_SLOTS),
            cmsgs: vec![0; RECV_SLOTS * space.div_ceil(8)],
            hdrs: Vec::with_capacity(RECV_SLOTS),
            cmsg_space: space,
            batched,
        };
        for slot in r.bufs.chunks_exact_mut(SLOT_LEN) {
            r.iovs.push(libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: SLOT_LEN,
            });
        }
        let stride = space.div_ceil(8);
        for i in 0..RECV_SLOTS {
            let mut h = zeroed_mmsghdr();
            h.msg_hdr.msg_iov = &mut r.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = r.cmsgs[i * stride..].as_mut_ptr().cast();
            r.hdrs.push(h);
        }
        r
    }

    /// How many datagrams one `recv` may return.
    pub fn slots(&self) -> usize {
        if self.batched {
            RECV_SLOTS
        } else {
            1
        }
    }

    /// Batched (recvmmsg) mode: a short count means the queue was empty.
    pub fn is_batched(&self) -> bool {
        self.batched
    }

    /// Receive up to `want` (≤ `slots()`) queued datagrams without blocking; `WouldBlock` if none.
    pub fn recv(&mut self, fd: RawFd, want: usize) -> io::Result<usize> {
        let want = want.clamp(1, RECV_SLOTS);
        for h in &mut self.hdrs[..want] {
            // The kernel overwrites these with what it used.
            h.msg_hdr.msg_controllen = self.cmsg_space as _;
            h.msg_hdr.msg_flags = 0;
        }
        if self.batched {
            let flags = libc::MSG_DONTWAIT as _;
            // SAFETY: `want` headers, each pointing at live buffers of the advertised sizes.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    want as _,
                    flags,
                    ptr::null_mut(),
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOSYS) {
                return Err(e);
            }
            self.batched = false;
        }
        // SAFETY: as above, one header.
        let n = unsafe { libc::recvmsg(fd, &mut self.hdrs[0].msg_hdr, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.hdrs[0].msg_len = n as u32;
        Ok(1)
    }

    /// Datagram `i` of the last `recv`, and what its control messages said.
    pub fn datagram(&self, i: usize) -> (&[u8], Received) {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(SLOT_LEN);
        let start = i * SLOT_LEN;
        let c = control(&h.msg_hdr);
        let got = Received {
            stamp: c.stamp,
            ttl: c.ttl,
        };
        (&self.bufs[start..start + len], got)
    }

    /// The highest SO_RXQ_OVFL count the first `n` datagrams of the last `recv` carried: how
    /// many datagrams the kernel had dropped on this socket (its receive buffer full) when
    /// they were queued. `None` if none carried one (the option is off, or nothing dropped
    /// yet: the kernel sends the cmsg only once the count is non-zero).
    pub fn drops(&self, n: usize) -> Option<u32> {
        self.hdrs[..n.min(RECV_SLOTS)]
            .iter()
            .filter_map(|h| control(&h.msg_hdr).drops)
            .max()
    }
}

/// What a received datagram's control messages said about it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// SO_TIMESTAMPNS kernel stamp, ns since the epoch.
    pub stamp: Option<u64>,
    /// The TTL (IPv4, IP_RECVTTL) or hop limit (IPv6, IPV6_RECVHOPLIMIT) it arrived with.
    pub ttl: Option<u8>,
}

/// What a received datagram's control messages said.
#[derive(Debug, Default, Clone, Copy)]
struct Control {
    stamp: Option<u64>,
    drops: Option<u32>,
    ttl: Option<u8>,
}

fn control(msg: &libc::msghdr) -> Control {
    let mut out = Control::default();
    // SAFETY: `msg` was filled by the kernel; the CMSG_* macros stay within msg_controllen,
    // and each payload is read only if its cmsg_len covers it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let len = (*c).cmsg_len as usize;
            let fits = |n: usize| len >= libc::CMSG_LEN(n as u32) as usize;
            if (*c).cmsg_level == libc::SOL_SOCKET {
                match (*c).cmsg_type {
                    libc::SCM_TIMESTAMPNS if fits(mem::size_of::<libc::timespec>()) => {
                        let ts = ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                        let ns = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
                        out.stamp = u64::try_from(ns).ok();
                    }
                    SO_RXQ_OVFL if fits(mem::size_of::<u32>()) => {
                        out.drops = Some(ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                    }
                    _ => {}
                }
            }
            let hops = matches!(
                ((*c).cmsg_level, (*c).cmsg_type),
                (libc::IPPROTO_IP, libc::IP_TTL) | (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT)
            );
            if hops && fits(mem::size_of::<libc::c_int>()) {
                let v = ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                out.ttl = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    out
}

/// SO_RXQ_OVFL (the cmsg type equals the option; asm-generic value, x86 and arm alike).
const SO_RXQ_OVFL: libc::c_int = 40;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::socket::open_fanout;
    use std::os::fd::AsRawFd;

    fn pair() -> (std::net::UdpSocket, std::net::SocketAddr, bool) {
        let a = open_fanout("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = a.socket.local_addr().unwrap();
        (a.socket, addr, a.kernel_stamps)
    }

    #[test]
    fn batched_and_single_receive_keep_bytes_and_kernel_stamps() {
        for batched in [true, false] {
            let (rx_sock, addr, stamps) = pair();
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            tx.set_ttl(64).unwrap();
            for i in 0..5u8 {
                tx.send_to(&[i; 3], addr).unwrap();
            }
            let mut rx = RecvBatch::new(batched);
            let mut seen = Vec::new();
            // Loopback queues each datagram on the receiver before `send_to` returns.
            for _ in 0..5 {
                let n = rx.recv(rx_sock.as_raw_fd(), rx.slots()).unwrap();
                for i in 0..n {
                    let (bytes, got) = rx.datagram(i);
                    seen.push(bytes.to_vec());
                    // The sender's unicast TTL is the default 64; loopback decrements nothing.
                    assert_eq!(got.ttl, Some(64), "IP_RECVTTL is on");
                    if stamps {
                        let ns = got
                            .stamp
                            .expect("SO_TIMESTAMPNS is on, so every datagram has a stamp");
                        let now = crate::util::clock::unix_ns();
                        assert!(now >= ns && now - ns < 5_000_000_000);
                    }
                }
                if seen.len() == 5 {
                    break;
                }
            }
            let want: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 3]).collect();
            assert_eq!(seen, want, "batched={batched}");
            let e = rx.recv(rx_sock.as_raw_fd(), rx.slots()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
    }

    #[test]
    fn the_hop_limit_of_an_ipv6_datagram_is_read() {
        let Ok(rx_sock) = crate::peer::socket::open_fanout("[::1]:0".parse().unwrap()) else {
            eprintln!("SKIP: no IPv6 on this host");
            return;
        };
        let addr = rx_sock.socket.local_addr().unwrap();
        let tx = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).unwrap();
        tx.set_unicast_hops_v6(17).unwrap();
        tx.send_to(b"hop", &addr.into()).unwrap();
        let mut rx = RecvBatch::new(true);
        assert_eq!(rx.recv(rx_sock.socket.as_raw_fd(), 1).unwrap(), 1);
        let (bytes, got) = rx.datagram(0);
        assert_eq!((bytes, got.ttl), (&b"hop"[..], Some(17)));
    }
}
