//! Where the lab's peers live: loopback addresses on this host, or network namespaces.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::process::Command;

use anyhow::Context;

use crate::netns::Testbed;

/// The port every peer uses inside a network-namespace host.
const NETNS_PEER_PORT: u16 = 4570;

pub enum Hosts {
    /// Peer i at 127.a.b.(i+1):port, counting on into 127.a.(b+1).x past .255 (b is even, so
    /// 256 peers stay in a block of 512 addresses of this lab) — one address per peer, so fan-out
    /// needs no port juggling and parallel labs (other a.b) never collide.
    Loopback { a: u8, b: u8, port: u16 },
    /// `--ipv6`: peer i at [::1]:ports[i] (IPv6 has one loopback address: distinct ports); with
    /// multicast runs, usually the ::1 of a private namespace (see [`private_loopback_for`]).
    Loopback6 { a: u8, b: u8, ports: Vec<u16> },
    /// Peer i alone in network namespace i, with its own IP stack, on a Linux bridge; with
    /// `ipv6`, at its unique-local address there.
    Netns {
        bed: Testbed,
        a: u8,
        b: u8,
        ipv6: bool,
    },
}

/// The comparator's listener and the hosts for up to `hosts` peers (their multicast group
/// source-specific with `ssm`; `multicast`: some run uses the group).
///
/// `--ipv6` multicast without `--netns` may move this whole process into a private network
/// namespace (see [`private_loopback_for`]): call it before any thread starts.
pub fn prepare(
    netns: bool,
    ipv6: bool,
    ssm: bool,
    multicast: bool,
    hosts: usize,
) -> anyhow::Result<(TcpListener, Hosts)> {
    // b even: loopback peers use 127.a.b.1 ..= 127.a.(b+1).0 (see Hosts::Loopback).
    let (a, b) = (rand::random::<u8>().max(1), rand::random::<u8>() & !1);
    if netns {
        let mode = crate::netns::support()
            .map_err(|why| anyhow::anyhow!("--netns is not possible here: {why}"))?;
        let bed = Testbed::create(hosts).context("cannot build the network-namespace hosts")?;
        // Before the line below (tests read the neighbour table once they see it).
        bed.pin_multicast(*netns_group(a, b, ssm).ip())
            .context("cannot set up the multicast group in the hosts")?;
        if ipv6 {
            bed.enable_ipv6(&[group_v6(a, b, ssm)])
                .context("cannot give the hosts IPv6 addresses")?;
        }
        say!(
            "mpcomm lab: {hosts} hosts in network namespaces {}-* ({})",
            bed.prefix(),
            mode.as_str()
        );
        // The comparator listens on the bridge, the one address every host can reach, in the
        // lab's family: with --ipv6 the uploads travel over IPv6 too.
        let listener = match ipv6 {
            false => bed.tcp_listener(0)?,
            true => bed.tcp_listener_v6(0)?,
        };
        return Ok((listener, Hosts::Netns { bed, a, b, ipv6 }));
    }
    if ipv6 {
        if multicast {
            // Before the listener: it must live in the namespace the peers will.
            private_loopback_for(group_v6(a, b, ssm))?;
        }
        let listener = TcpListener::bind("[::1]:0").context(
            "--ipv6: cannot listen on [::1] (does this host have IPv6 on the loopback?)",
        )?;
        // Ports the kernel says are free now, all held until every one is known.
        let probes = (0..hosts)
            .map(|_| std::net::UdpSocket::bind("[::1]:0"))
            .collect::<std::io::Result<Vec<_>>>()
            .context("--ipv6: cannot bind UDP on [::1]")?;
        let ports = probes
            .iter()
            .map(|p| p.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<Vec<_>>>()?;
        return Ok((listener, Hosts::Loopback6 { a, b, ports }));
    }
    // A port the kernel says is free now; on a 127.a.b.x address nobody else uses it anyway.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let port = probe.local_addr()?.port();
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on loopback")?;
    Ok((listener, Hosts::Loopback { a, b, port }))
}

/// Make sure IPv6 multicast to `group` gets around this process's loopback: if it does not here
/// (Linux's `lo` in the host's namespace never carries it), move the process into a private
/// network namespace whose loopback does (`netns::enter_private_loopback`), and say so. That
/// namespace holds the comparator and every peer (they are children); it has no name and goes
/// when the lab exits. Needs root or user namespaces, and no thread running yet.
fn private_loopback_for(group: Ipv6Addr) -> anyhow::Result<()> {
    // Someone may have set up this namespace's loopback already (e.g. a container of its own).
    if crate::netns::loopback_carries_ipv6_multicast(group) {
        return Ok(());
    }
    let refused = |why: String| {
        anyhow::anyhow!(
            "--ipv6 multicast on the loopback needs a private network namespace, and {why}; \
             use --transport fanout (or --netns where namespaces work)"
        )
    };
    let mode =
        crate::netns::support().map_err(|why| refused(format!("none is possible: {why}")))?;
    crate::netns::enter_private_loopback(mode)
        .map_err(|e| refused(format!("making one failed: {e}")))?;
    anyhow::ensure!(
        crate::netns::loopback_carries_ipv6_multicast(group),
        "--ipv6: even the private network namespace's loopback does not deliver multicast to \
         {group} (lo up, a local route for ff00::/8): use --transport fanout, and report this"
    );
    say!(
        "mpcomm lab: this host's loopback cannot carry IPv6 multicast; running in a private \
         network namespace whose loopback can ({})",
        mode.as_str()
    );
    Ok(())
}

/// The multicast group of a lab in network namespaces (source-specific: in 232/8).
fn netns_group(a: u8, b: u8, ssm: bool) -> SocketAddrV4 {
    let first = if ssm { 232 } else { 239 };
    SocketAddrV4::new(Ipv4Addr::new(first, 255, a, b), NETNS_PEER_PORT + 7)
}

/// The IPv6 group of a lab: transient, link-local scope (the hosts share one link, the
/// loopback is one too); ff12::/16, or the SSM range ff32::/96.
fn group_v6(a: u8, b: u8, ssm: bool) -> Ipv6Addr {
    let tag = u16::from_be_bytes([a, b]);
    if ssm {
        Ipv6Addr::new(0xff32, 0, 0, 0, 0, 0, 0x4000, tag)
    } else {
        Ipv6Addr::new(0xff12, 0, 0, 0, 0, 0, 0x77, tag)
    }
}

/// Peer i's loopback address: 127.a.b.0 + i + 1 (so 127.a.(b+1).0 for i = 255).
fn loopback_addr(a: u8, b: u8, i: usize) -> Ipv4Addr {
    let base = u32::from(Ipv4Addr::new(127, a, b, 0));
    let i = u32::try_from(i).expect("peer index fits u32");
    assert!(i < 511, "peer {i} leaves the lab's 127.{a}.{b}.0/23");
    Ipv4Addr::from(base + i + 1)
}

impl Hosts {
    pub fn peer_addrs(&self, n: usize) -> Vec<SocketAddr> {
        match self {
            Hosts::Loopback { a, b, port } => (0..n)
                .map(|i| SocketAddr::V4(SocketAddrV4::new(loopback_addr(*a, *b, i), *port)))
                .collect(),
            Hosts::Loopback6 { ports, .. } => ports[..n]
                .iter()
                .map(|&p| SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), p))
                .collect(),
            Hosts::Netns { bed, ipv6, .. } => (0..n)
                .map(|i| match ipv6 {
                    false => SocketAddr::V4(SocketAddrV4::new(bed.host_addr(i), NETNS_PEER_PORT)),
                    true => SocketAddr::V6(SocketAddrV6::new(
                        bed.host_addr_v6(i),
                        NETNS_PEER_PORT,
                        0,
                        0,
                    )),
                })
                .collect(),
        }
    }

    /// A multicast group for the lab's runs (scoped, random per lab; in the SSM range with
    /// `ssm`).
    pub fn group(&self, ssm: bool) -> SocketAddr {
        match self {
            Hosts::Loopback { a, b, port } => {
                let first = if ssm { 232 } else { 239 };
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(first, 255, *a, *b), *port))
            }
            Hosts::Loopback6 { a, b, ports } => {
                // One past the peers' ports would do as well; the first peer's port is free
                // for a group (bound to another address).
                let port = ports.first().copied().unwrap_or(NETNS_PEER_PORT);
                SocketAddr::V6(SocketAddrV6::new(group_v6(*a, *b, ssm), port, 0, 0))
            }
            Hosts::Netns {
                a, b, ipv6: false, ..
            } => SocketAddr::V4(netns_group(*a, *b, ssm)),
            Hosts::Netns {
                a, b, ipv6: true, ..
            } => SocketAddr::V6(SocketAddrV6::new(
                group_v6(*a, *b, ssm),
                NETNS_PEER_PORT + 7,
                0,
                0,
            )),
        }
    }

    /// The interface peer i uses for multicast (`--iface`): an address, or a name for IPv6.
    pub fn iface(&self, i: usize) -> Option<String> {
        match self {
            Hosts::Loopback { .. } => Some(Ipv4Addr::LOCALHOST.to_string()),
            Hosts::Loopback6 { .. } => Some("lo".into()),
            Hosts::Netns {
                bed, ipv6: false, ..
            } => Some(bed.host_addr(i).to_string()),
            Hosts::Netns {
                bed, ipv6: true, ..
            } => Some(bed.iface(i)),
        }
    }

    pub fn command(&self, i: usize, exe: &std::path::Path) -> Command {
        match self {
            Hosts::Loopback { .. } | Hosts::Loopback6 { .. } => Command::new(exe),
            Hosts::Netns { bed, .. } => bed.command(i, exe),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_distinct_up_to_the_limit() {
        let addrs: std::collections::HashSet<Ipv4Addr> = (0..usize::from(super::super::MAX_PEERS))
            .map(|i| loopback_addr(7, 254, i))
            .collect();
        assert_eq!(addrs.len(), usize::from(super::super::MAX_PEERS));
        assert_eq!(loopback_addr(7, 254, 0), Ipv4Addr::new(127, 7, 254, 1));
        assert_eq!(loopback_addr(7, 254, 254), Ipv4Addr::new(127, 7, 254, 255));
        assert_eq!(loopback_addr(7, 254, 255), Ipv4Addr::new(127, 7, 255, 0));
    }
}
