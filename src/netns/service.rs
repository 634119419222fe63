//! Sockets of the calling process that live inside the testbed.
//!
//! The caller's own network namespace has no path into the testbed (by design), yet the lab's
//! comparator runs in the calling process and peers upload to it over TCP. So the bridge gets
//! one address, [`Testbed::service_addr`] (`10.X.Y.254`), and [`Testbed::tcp_listener`] creates a
//! listening socket *in the switch namespace* for the caller: a forked child joins the testbed's
//! namespaces, creates and binds the socket, hands the descriptor back over a socket pair
//! (SCM_RIGHTS) and exits without exec. A socket stays in the namespace it was created in, so
//! the caller accepts connections from the hosts with ordinary std or mio code, in both root and
//! user-namespace mode.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use super::{NetnsError, Testbed};

impl Testbed {
    /// `10.X.Y.254`: the bridge's address in the switch namespace, reachable from every host.
    /// Only [`Testbed::tcp_listener`] sockets listen there.
    pub fn service_addr(&self) -> Ipv4Addr {
        let [a, b] = self.net();
        Ipv4Addr::new(10, a, b, 254)
    }

    /// A TCP listener owned by this process, bound to `service_addr():port` inside the testbed
    /// (`port` 0 picks a free one: read it back with `local_addr`). Blocking, like any new std
    /// listener; call `set_nonblocking(true)` before handing it to mio.
    pub fn tcp_listener(&self, port: u16) -> Result<TcpListener, NetnsError> {
        let addr = SocketAddrV4::new(self.service_addr(), port);
        let fd = self.socket_in_switch(addr.into())?;
        Ok(TcpListener::from(fd))
    }

    /// `fd6d:7063:XXYY::fe`: the bridge's IPv6 address, once [`Testbed::enable_ipv6`] gave the
    /// hosts theirs (host i is `::(i+1)`, at most 250 of them).
    pub fn service_addr_v6(&self) -> Ipv6Addr {
        let [a, b] = self.net();
        Ipv6Addr::new(0xfd6d, 0x7063, u16::from_be_bytes([a, b]), 0, 0, 0, 0, 0xfe)
    }

    /// As [`Testbed::tcp_listener`], on [`Testbed::service_addr_v6`] (after `enable_ipv6`).
    pub fn tcp_listener_v6(&self, port: u16) -> Result<TcpListener, NetnsError> {
        let addr = SocketAddrV6::new(self.service_addr_v6(), port, 0, 0);
        let fd = self.socket_in_switch(addr.into())?;
        Ok(TcpListener::from(fd))
    }

    fn socket_in_switch(&self, addr: SocketAddr) -> Result<OwnedFd, NetnsError> {
        let what = || {
            format!(
                "creating a listener on {addr} inside testbed {}",
                self.prefix()
            )
        };
        let (ours, theirs) = UnixStream::pair().map_err(|e| NetnsError::io(what(), e))?;
        let their_fd = theirs.as_raw_fd();
        // Made before the fork: the child only passes it to bind.
        let sa = socket2::SockAddr::from(addr);
        let family = match addr {
            SocketAddr::V4(_) => libc::AF_INET,
            SocketAddr::V6(_) => libc::AF_INET6,
        };
        // The program is never executed: the second pre_exec step ends the child.
        let mut cmd = std::process::Command::new("/bin/true");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.enter_switch(&mut cmd);
        // SAFETY: runs between fork and exec and only calls async-signal-safe functions
        // (socket, setsockopt, bind, listen, sendmsg, _exit) on stack data.
        unsafe {
            cmd.pre_exec(move || {
                let s = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                if s < 0 {
                    return Err(io::Error::last_os_error());
                }
                let one: libc::c_int = 1;
                libc::setsockopt(
                    s,
                    libc::SOL_SOCKET,
                    libc::SO_REUSEADDR,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
                if libc::bind(s, sa.as_ptr().cast(), sa.len()) != 0 || libc::listen(s, 128) != 0 {
                    return Err(io::Error::last_os_error());
                }
                send_fd(their_fd, s)?;
                libc::_exit(0);
            });
        }
        let mut child = cmd.spawn().map_err(|e| NetnsError::io(what(), e))?;
        drop(theirs);
        let status = child.wait().map_err(|e| NetnsError::io(what(), e))?;
        if !status.success() {
            return Err(NetnsError::Command {
                what: what(),
                detail: format!("helper child exited with {status}"),
            });
        }
        ours.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| NetnsError::io(what(), e))?;
        recv_fd(&ours).map_err(|e| NetnsError::io(what(), e))
    }
}

/// Send one descriptor with one payload byte. Async-signal-safe: no allocation.
unsafe fn send_fd(over: i32, fd: i32) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // u64 array: cmsghdr alignment.
    let mut control = [0u64; 4];
    let mut msg: libc::msghdr = std::mem::zeroed();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) as _;
    let cmsg = libc::CMSG_FIRSTHDR(&msg);
    (*cmsg).cmsg_level = libc::SOL_SOCKET;
    (*cmsg).cmsg_type = libc::SCM_RIGHTS;
    (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd);
    if libc::sendmsg(over, &msg, 0) != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receive the descriptor [`send_fd`] sent.
fn recv_fd(from: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    // SAFETY: msghdr points at live locals for the duration of recvmsg; the control data is
    // read only where the kernel says it wrote a SCM_RIGHTS message.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(from.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n != 1
            || cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the helper child sent no descriptor",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
