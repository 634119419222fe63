//! Where the lab's peers live: loopback addresses on this host, or network namespaces.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
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
    /// Peer i alone in network namespace i, with its own IP stack, on a Linux bridge.
    Netns { bed: Testbed, a: u8, b: u8 },
}

/// The comparator's listener and the hosts for up to `hosts` peers.
pub fn prepare(netns: bool, hosts: usize) -> anyhow::Result<(TcpListener, Hosts)> {
    // b even: loopback peers use 127.a.b.1 ..= 127.a.(b+1).0 (see Hosts::Loopback).
    let (a, b) = (rand::random::<u8>().max(1), rand::random::<u8>() & !1);
    if netns {
        let mode = crate::netns::support()
            .map_err(|why| anyhow::anyhow!("--netns is not possible here: {why}"))?;
        let bed = Testbed::create(hosts).context("cannot build the network-namespace hosts")?;
        // Before the line below (tests read the neighbour table once they see it).
        bed.pin_multicast(*netns_group(a, b).ip())
            .context("cannot set up the multicast group in the hosts")?;
        say!(
            "mpcomm lab: {hosts} hosts in network namespaces {}-* ({})",
            bed.prefix(),
            mode.as_str()
        );
        // The comparator listens on the bridge, the one address every host can reach.
        let listener = bed.tcp_listener(0)?;
        return Ok((listener, Hosts::Netns { bed, a, b }));
    }
    // A port the kernel says is free now; on a 127.a.b.x address nobody else uses it anyway.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let port = probe.local_addr()?.port();
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on loopback")?;
    Ok((listener, Hosts::Loopback { a, b, port }))
}

/// The multicast group of a lab in network namespaces.
fn netns_group(a: u8, b: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(239, 255, a, b), NETNS_PEER_PORT + 7)
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
            Hosts::Netns { bed, .. } => (0..n)
                .map(|i| SocketAddr::V4(SocketAddrV4::new(bed.host_addr(i), NETNS_PEER_PORT)))
                .collect(),
        }
    }

    /// A multicast group for the lab's runs (administratively scoped, random per lab).
    pub fn group(&self) -> SocketAddr {
        match self {
            Hosts::Loopback { a, b, port } => {
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(239, 255, *a, *b), *port))
            }
            Hosts::Netns { a, b, .. } => SocketAddr::V4(netns_group(*a, *b)),
        }
    }

    /// The interface address peer i uses for multicast.
    pub fn iface(&self, i: usize) -> Option<Ipv4Addr> {
        match self {
            Hosts::Loopback { .. } => Some(Ipv4Addr::LOCALHOST),
            Hosts::Netns { bed, .. } => Some(bed.host_addr(i)),
        }
    }

    pub fn command(&self, i: usize, exe: &std::path::Path) -> Command {
        match self {
            Hosts::Loopback { .. } => Command::new(exe),
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
