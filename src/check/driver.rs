//! The thin mio driver of the preflight: a unicast socket on this host's listed address, a
//! member socket of the group (with multicast), one event loop, no sleeps. Receive goes
//! through `recvmsg` to read each datagram's TTL (IP_RECVTTL) or hop limit
//! (IPV6_RECVHOPLIMIT) from its control message.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::machine::{Dest, Machine};
use super::{CheckConfig, CheckError, CheckReport};
use crate::peer::socket::{open_fanout, DEFAULT_BUFFER};
use crate::wire::Transport;

const UNICAST: Token = Token(0);
const MULTICAST: Token = Token(1);
/// Datagrams read per socket per wake-up; past it the next poll does not wait.
const READ_BOUND: usize = 256;

/// Ask the kernel for each datagram's TTL / hop limit.
fn want_ttl(fd: RawFd, v6: bool) -> io::Result<()> {
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVTTL)
    };
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live c_int and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram into `buf`: its length and the TTL it arrived with, if the kernel said.
fn recv_with_ttl(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<u8>)> {
    // u64: cmsghdr alignment. Room for the TTL and whatever else the socket has on (the
    // peer's helpers turn on timestamps and drop counts).
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` points at a live local of the size given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within
    // msg_controllen; a payload is read only when its cmsg_len covers a c_int.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let len = (*c).cmsg_len as usize;
            let covers = len >= libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
            let level = (*c).cmsg_level;
            let kind = (*c).cmsg_type;
            let is_ttl = (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT);
            if is_ttl && covers {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                ttl = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, ttl))
}

struct Sockets {
    unicast: UdpSocket,
    multicast: Option<UdpSocket>,
    peers: Vec<SocketAddr>,
    group: Option<SocketAddr>,
    send_errors: u64,
}

impl Sockets {
    fn open(cfg: &CheckConfig) -> Result<Sockets, CheckError> {
        let m = &cfg.machine;
        let own = m.peers[usize::from(m.id)];
        let v6 = own.is_ipv6();
        let opened = open_fanout(own).map_err(|e| CheckError::Unicast(own, e))?;
        let s = socket2::SockRef::from(&opened.socket);
        let hops = u32::from(m.unicast_ttl);
        let set = if v6 {
            s.set_unicast_hops_v6(hops)
        } else {
            s.set_ttl(hops)
        };
        set.and_then(|()| want_ttl(opened.socket.as_raw_fd(), v6))
            .map_err(|e| CheckError::Unicast(own, e))?;
        let unicast = UdpSocket::from_std(opened.socket);
        let (multicast, group) = match (&cfg.membership, m.multicast) {
            (Some(ms), true) => {
                let group = ms.destination();
                let o = ms
                    .open(u32::from(m.multicast_ttl), DEFAULT_BUFFER, None)
                    .map_err(|e| CheckError::Multicast(group, e))?;
                want_ttl(o.socket.as_raw_fd(), group.is_ipv6())
                    .map_err(|e| CheckError::Multicast(group, e))?;
                (Some(UdpSocket::from_std(o.socket)), Some(group))
            }
            _ => (None, None),
        };
        Ok(Sockets {
            unicast,
            multicast,
            peers: m.peers.clone(),
            group,
            send_errors: 0,
        })
    }

    fn flush(&mut self, m: &mut Machine, buf: &mut [u8]) {
        while let Some(t) = m.poll_transmit(buf) {
            let data = &buf[..t.len];
            let sent = match (t.dest, &self.multicast, self.group) {
                (Dest::Peer(p), _, _) => self.unicast.send_to(data, self.peers[usize::from(p)]),
                (Dest::Group, Some(s), Some(g)) => s.send_to(data, g),
                (Dest::Group, ..) => continue,
            };
            if let Err(e) = sent {
                // Measured as loss; said once so a full buffer or no route is visible.
                if self.send_errors == 0 {
                    say!(
                        "mpcomm check: cannot send to {:?}: {e} (counted as lost)",
                        t.dest
                    );
                }
                self.send_errors += 1;
            }
        }
    }
}

/// Run the preflight on real sockets until the machine is done.
pub fn run(cfg: CheckConfig) -> Result<CheckReport, CheckError> {
    let mut sockets = Sockets::open(&cfg)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut sockets.unicast, UNICAST, Interest::READABLE)?;
    if let Some(s) = sockets.multicast.as_mut() {
        poll.registry().register(s, MULTICAST, Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; 1 << 16];
    let mut m = Machine::new(cfg.machine, Instant::now());
    let mut more = false;
    loop {
        let now = Instant::now();
        m.handle_timeout(now);
        sockets.flush(&mut m, &mut buf);
        if m.is_done(now) {
            break;
        }
        let timeout = if more {
            Some(Duration::ZERO)
        } else {
            m.poll_timeout().map(|t| t.saturating_duration_since(now))
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        let drain_all = std::mem::take(&mut more);
        for (token, via) in [
            (UNICAST, Transport::Fanout),
            (MULTICAST, Transport::Multicast),
        ] {
            // Read both on every wake-up that named either: cheap, and no event is needed
            // again for datagrams left behind by the bound.
            if !drain_all && !events.iter().any(|e| e.token() == token) {
                continue;
            }
            let fd = match token {
                UNICAST => sockets.unicast.as_raw_fd(),
                _ => match &sockets.multicast {
                    Some(s) => s.as_raw_fd(),
                    None => continue,
                },
            };
            for k in 0..=READ_BOUND {
                if k == READ_BOUND {
                    more = true;
                    break;
                }
                match recv_with_ttl(fd, &mut buf) {
                    Ok((n, ttl)) => {
                        m.handle_datagram(Instant::now(), via, ttl, &buf[..n]);
                        sockets.flush(&mut m, &mut buf);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        say!("mpcomm check: receive error on the {via} socket: {e}");
                        break;
                    }
                }
            }
        }
    }
    if sockets.send_errors > 0 {
        say!(
            "mpcomm check: {} datagram(s) could not be sent",
            sockets.send_errors
        );
    }
    Ok(m.report())
}
