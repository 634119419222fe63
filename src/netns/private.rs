//! A private network namespace for this process whose loopback carries IPv6 multicast.
//!
//! Linux's `lo` in the host's namespace does not deliver IPv6 multicast: there is no route for
//! ff00::/8 on it. A *local*-type route (`ip -6 route add local ff00::/8 dev lo table local`)
//! makes the kernel hand every datagram to a group back to the host's own sockets, which is
//! exactly what a one-machine lab needs; a `multicast`-type route via lo does not work (the
//! kernel turns any non-local route via lo into a reject route: the send succeeds and the
//! datagram is counted in Ip6OutNoRoutes). The local route captures *all* IPv6 multicast of
//! its namespace, neighbour discovery included, so it is only ever added in a namespace of our
//! own, never in the host's: [`enter_private_loopback`] makes one.

use std::ffi::OsStr;
use std::io;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use super::{find_tool, Mode, NetnsError};

/// The `ip` command (IPv6 family) that makes a namespace's `lo` carry IPv6 multicast: a
/// *local* route for ff00::/8 (see the module doc for why local, and why only in a namespace of
/// our own). [`enter_private_loopback`] and `Testbed::carry_ipv6_multicast_on_loopback` add it.
pub(super) const LOOPBACK_MULTICAST_ROUTE: [&str; 8] = [
    "route", "add", "local", "ff00::/8", "dev", "lo", "table", "local",
];

/// How long [`loopback_carries_ipv6_multicast`] waits for its datagram: the loopback delivers
/// in microseconds, so anything not back by then is not coming.
const PROBE_WAIT: Duration = Duration::from_millis(200);

/// Whether the loopback of the current network namespace delivers a datagram sent to `group`
/// back to a socket that joined it there: a real round trip (a receiver on `[::]:0` joined on
/// lo, a sender on `[::1]:0` with IPV6_MULTICAST_IF = lo and loop on), waiting at most 200 ms.
/// Sending alone proves nothing: through a reject route the send succeeds and nothing arrives.
/// `false` also when there is no IPv6 loopback at all, or `group` is not multicast.
pub fn loopback_carries_ipv6_multicast(group: Ipv6Addr) -> bool {
    round_trip(group).unwrap_or(false)
}

fn round_trip(group: Ipv6Addr) -> io::Result<bool> {
    if !group.is_multicast() {
        return Ok(false);
    }
    let lo = nix::net::if_::if_nametoindex("lo").map_err(io::Error::from)?;
    let receiver = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))?;
    receiver.join_multicast_v6(&group, lo)?;
    let port = receiver.local_addr()?.port();
    let sender = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0))?;
    let sock = socket2::SockRef::from(&sender);
    sock.set_multicast_if_v6(lo)?;
    sock.set_multicast_loop_v6(true)?;
    // A token of our own: a stray datagram to the same group and port is not an answer.
    let token = rand::random::<u64>().to_be_bytes();
    if sender
        .send_to(&token, SocketAddrV6::new(group, port, 0, lo))
        .is_err()
    {
        return Ok(false); // e.g. ENETUNREACH: no route for the group at all
    }
    let deadline = Instant::now() + PROBE_WAIT;
    let mut buf = [0u8; 64];
    // Bounded: every pass either ends or waits for a datagram that arrived before the deadline.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        receiver.set_read_timeout(Some(left))?;
        match receiver.recv(&mut buf) {
            Ok(n) if buf[..n] == token => return Ok(true),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Move this process into a new network namespace whose loopback carries IPv6 multicast: `lo`
/// up (so `::1` and `127.0.0.1` exist) and a local route for ff00::/8 on it (see the module
/// doc). Nothing else is in it: no other interface, no route out, so peers in it can reach
/// only each other.
///
/// * In [`Mode::Root`]: `unshare(CLONE_NEWNET)`.
/// * In [`Mode::UserNamespace`]: `unshare(CLONE_NEWUSER | CLONE_NEWNET)`, the caller's uid and gid
///   mapped to 0 inside (so the `ip` commands, and any child, hold CAP_NET_ADMIN over the new
///   namespace, and nothing beyond it). The kernel allows this only in a single-threaded
///   process: call it before any thread starts ([`NetnsError::Threaded`] otherwise).
///
/// It affects the calling thread and everything it starts afterwards (threads, children) for
/// good; there is no way back and nothing to clean up: the namespace goes when its last process
/// exits, and it has no name in `ip netns list`.
pub fn enter_private_loopback(mode: Mode) -> Result<(), NetnsError> {
    let ip = find_tool("ip")
        .ok_or_else(|| NetnsError::Unsupported("`ip` not found: install iproute2".into()))?;
    match mode {
        Mode::Root => unshare(libc::CLONE_NEWNET)?,
        Mode::UserNamespace => {
            // SAFETY: getuid and getgid cannot fail.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET)?;
            // setgroups must be denied before an unprivileged process may write gid_map.
            write_proc("/proc/self/setgroups", "deny")?;
            write_proc("/proc/self/uid_map", &format!("0 {uid} 1"))?;
            write_proc("/proc/self/gid_map", &format!("0 {gid} 1"))?;
        }
    }
    run_ip(&ip, &["link", "set", "lo", "up"])?;
    let mut route = vec!["-6"];
    route.extend(LOOPBACK_MULTICAST_ROUTE);
    run_ip(&ip, &route)
}

fn unshare(flags: libc::c_int) -> Result<(), NetnsError> {
    // SAFETY: unshare takes no pointers; it changes only this thread's namespaces.
    if unsafe { libc::unshare(flags) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::EINVAL) if flags & libc::CLONE_NEWUSER != 0 => NetnsError::Threaded,
        Some(libc::EPERM) | Some(libc::ENOSPC) | Some(libc::EUSERS) => {
            NetnsError::Unsupported(format!(
                "cannot create a private network namespace ({e}): run as root with \
                 CAP_SYS_ADMIN, or enable user namespaces (user.max_user_namespaces > 0)"
            ))
        }
        _ => NetnsError::io("unshare (a private network namespace)", e),
    })
}

fn write_proc(path: &str, text: &str) -> Result<(), NetnsError> {
    std::fs::write(path, text).map_err(|e| NetnsError::io(format!("writing {text:?} to {path}"), e))
}

fn run_ip(ip: &std::path::Path, args: &[&str]) -> Result<(), NetnsError> {
    let what = format!("ip {}", args.join(" "));
    let out = std::process::Command::new(ip)
        .args(args.iter().map(OsStr::new))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| NetnsError::io(&what, e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetnsError::Command {
        what,
        detail: format!(
            "{}; {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test harness is multi-threaded, and a parked thread makes sure of it (libtest may run
    /// a test on the main thread): a user namespace is refused with the typed error, and the
    /// refused unshare changes nothing (the namespaces stay the harness's).
    #[test]
    fn a_user_namespace_is_refused_once_a_thread_runs() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let parked = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        let net_before = std::fs::read_link("/proc/self/ns/net").ok();
        let result = enter_private_loopback(Mode::UserNamespace);
        drop(tx);
        parked.join().expect("the parked thread ends");
        match result {
            Err(NetnsError::Threaded) => {}
            Err(NetnsError::Unsupported(why)) if why.contains("`ip` not found") => {
                eprintln!("SKIP: {why}");
                return;
            }
            other => panic!("expected NetnsError::Threaded, got {other:?}"),
        }
        assert_eq!(std::fs::read_link("/proc/self/ns/net").ok(), net_before);
        assert!(NetnsError::Threaded
            .to_string()
            .contains("must be called before any thread starts"));
    }

    #[test]
    fn a_unicast_address_never_carries_multicast() {
        assert!(!loopback_carries_ipv6_multicast(Ipv6Addr::LOCALHOST));
    }
}
