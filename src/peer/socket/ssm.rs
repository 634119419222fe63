//! Source-specific multicast joins: one (S,G) membership per peer's address instead of the
//! any-source join (IP_ADD_SOURCE_MEMBERSHIP; MCAST_JOIN_SOURCE_GROUP for IPv6, which socket2
//! lacks). The socket itself is opened in [`super`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};

use socket2::Socket;

/// Source-specific multicast: whom to hear, and where our own datagrams leave from.
#[derive(Debug, Clone, Copy)]
pub struct Ssm<'a> {
    /// Every peer's address (ours included: we hear ourselves); duplicates are joined once.
    pub sources: &'a [IpAddr],
    /// This peer's listed address: the source of its datagrams to the group.
    pub own: IpAddr,
}

/// The SSM ranges: 232.0.0.0/8 (RFC 4607) and ff3x::/96 (RFC 3306, 4607).
pub fn is_ssm_group(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.octets()[0] == 232,
        IpAddr::V6(ip) => {
            let s = ip.segments();
            s[0] & 0xfff0 == 0xff30 && s[1..6].iter().all(|&x| x == 0)
        }
    }
}

pub(super) fn ssm_refused(group: IpAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{group} is not a source-specific multicast group: --ssm needs 232.0.0.0/8 \
             (e.g. 232.255.77.77) or ff3x::/96 (e.g. ff3e::4000:7777)"
        ),
    )
}

/// Join (S,G) for each distinct IPv4 source in `sources` on `iface`.
pub(super) fn join_sources_v4(
    s: &Socket,
    group: Ipv4Addr,
    iface: Ipv4Addr,
    sources: &[IpAddr],
) -> io::Result<()> {
    let mut joined: Vec<Ipv4Addr> = Vec::with_capacity(sources.len());
    for src in sources {
        let IpAddr::V4(src) = *src else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{src} is IPv6, the group {group} IPv4: one family per run"),
            ));
        };
        if joined.contains(&src) {
            continue;
        }
        s.join_ssm_v4(&src, &group, &iface).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot join ({src}, {group}) on interface {iface}: {e} (check --iface)"),
            )
        })?;
        joined.push(src);
    }
    Ok(())
}

/// A `sockaddr_storage` holding `ip` (port 0).
fn storage_v6(ip: Ipv6Addr) -> libc::sockaddr_storage {
    let addr: socket2::SockAddr = SocketAddrV6::new(ip, 0, 0, 0).into();
    // SAFETY: SockAddr holds a sockaddr_storage; its first `len` bytes are the address.
    unsafe { std::ptr::read(addr.as_ptr().cast::<libc::sockaddr_storage>()) }
}

/// Join (S,G) for each distinct IPv6 source in `sources` on interface `ifindex`
/// (MCAST_JOIN_SOURCE_GROUP: socket2 has no IPv6 form).
pub(super) fn join_sources_v6(
    s: &Socket,
    group: Ipv6Addr,
    ifindex: u32,
    sources: &[IpAddr],
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut joined: Vec<Ipv6Addr> = Vec::with_capacity(sources.len());
    for src in sources {
        let IpAddr::V6(src) = *src else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{src} is IPv4, the group {group} IPv6: one family per run"),
            ));
        };
        if joined.contains(&src) {
            continue;
        }
        let req = libc::group_source_req {
            gsr_interface: ifindex,
            gsr_group: storage_v6(group),
            gsr_source: storage_v6(src),
        };
        // SAFETY: a live socket and a group_source_req of the advertised size.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::MCAST_JOIN_SOURCE_GROUP,
                (&req as *const libc::group_source_req).cast(),
                std::mem::size_of::<libc::group_source_req>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot join ({src}, {group}) on interface index {ifindex}: {e} (check --iface)"),
            ));
        }
        joined.push(src);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssm_ranges() {
        for ip in [
            "232.0.0.1",
            "232.255.77.77",
            "ff3e::4000:1",
            "ff32::8000:7777",
        ] {
            assert!(is_ssm_group(ip.parse().unwrap()), "{ip}");
        }
        // Any-source groups, and ff3x:: groups outside the /96 (unicast-prefix based).
        for ip in [
            "239.255.77.77",
            "224.0.0.1",
            "ff12::7777",
            "ff3e:0:0:1::1",
            "ff32::4000:1:2",
        ] {
            assert!(!is_ssm_group(ip.parse().unwrap()), "{ip}");
        }
    }
}
