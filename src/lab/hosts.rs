//! Where the lab's peers live: loopback addresses on this host, or network namespaces.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;

use super::LabArgs;

pub enum Hosts {
    /// Peer i at 127.a.b.(i+1):port — one address per peer, so fan-out needs no port juggling
    /// and parallel labs (other a.b) never collide.
    Loopback { a: u8, b: u8, port: u16 },
}

/// The comparator's listen address and the hosts for the peers.
pub fn prepare(args: &LabArgs) -> anyhow::Result<(SocketAddr, Hosts)> {
    if args.netns {
        anyhow::bail!("--netns is not available in this build yet");
    }
    // A port the kernel says is free now; on a 127.a.b.x address nobody else uses it anyway.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let port = probe.local_addr()?.port();
    let (a, b) = (rand::random::<u8>().max(1), rand::random::<u8>().max(1));
    Ok((
        "127.0.0.1:0".parse().expect("literal"),
        Hosts::Loopback { a, b, port },
    ))
}

impl Hosts {
    pub fn peer_addrs(&self, n: usize) -> Vec<SocketAddr> {
        match self {
            Hosts::Loopback { a, b, port } => (0..n)
                .map(|i| {
                    SocketAddr::V4(SocketAddrV4::new(
                        Ipv4Addr::new(127, *a, *b, (i + 1) as u8),
                        *port,
                    ))
                })
                .collect(),
        }
    }

    /// A multicast group for one run (administratively scoped, random per lab).
    pub fn group(&self) -> SocketAddr {
        match self {
            Hosts::Loopback { a, b, port } => {
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(239, 255, *a, *b), *port))
            }
        }
    }

    pub fn iface(&self, _i: usize) -> Option<Ipv4Addr> {
        match self {
            Hosts::Loopback { .. } => Some(Ipv4Addr::LOCALHOST),
        }
    }

    pub fn command(&self, _i: usize, exe: &std::path::Path) -> Command {
        match self {
            Hosts::Loopback { .. } => Command::new(exe),
        }
    }
}
