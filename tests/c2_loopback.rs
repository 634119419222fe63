//! Issue 5 on loopback: a controller and 4 agents as separate processes, each agent
//! advertising its own 127.0.0.x address (the same scenario runs across network namespaces in
//! `c2_netns.rs`).

mod c2_common;

use std::net::SocketAddr;
use std::process::Command;

use c2_common::{scenario, Hosts, EXE};

struct Loopback {
    peer_port: u16,
    group: String,
}

impl Hosts for Loopback {
    fn command(&self, _host: usize) -> Command {
        Command::new(EXE)
    }
    fn controller_listen(&self) -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }
    fn controller_extra(&self) -> Vec<String> {
        // Other tests share this loopback: a private peer port and multicast group.
        vec![
            "--peer-port".into(),
            self.peer_port.to_string(),
            "--group".into(),
            self.group.clone(),
        ]
    }
    fn agent_extra(&self, host: usize) -> Vec<String> {
        vec!["--advertise".into(), format!("127.0.0.{}", 10 + host)]
    }
    fn raw_probe(&self) -> bool {
        true
    }
}

#[test]
fn controller_and_four_agents_on_loopback() {
    let (port, group) = c2_common::private_port_and_group();
    let back = scenario(&Loopback {
        peer_port: port,
        group,
    });
    eprintln!("MEASURED loopback re-registration after controller restart: {back:?}");
}
