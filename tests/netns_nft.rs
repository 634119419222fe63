//! Exact accounting against the kernel: inside one host (a network namespace on a bridge),
//! nftables drops a random share of the incoming DATA datagrams and counts them; the loss the
//! comparator reports for that receiver equals the counter, for both transports, run after
//! run. And with repair (`--order fifo`), the same drops are all repaired: nothing is lost.
//!
//! Runs once per namespace mode that works here (root, user namespace); skips, saying why,
//! where there is none or no `nft`. The hosts are removed by the `Testbed`'s `Drop` and the
//! peers killed by their `Proc` guards, also when a check fails.

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use mpcomm::compare::{analyse, AnalyseOptions, PeerLog};
use mpcomm::netns::{find_tool, Mode, Testbed};
use support::{Proc, TempDir};

const HOSTS: usize = 4;
const MSGS: u32 = 60;
const PORT: u16 = 4570;
const GROUP_PORT: u16 = 4577;
/// The receiver whose incoming DATA nftables thins out.
const VICTIM: usize = 1;

fn nft(bed: &Testbed, args: &[&str]) -> String {
    let nft = find_tool("nft").expect("nft");
    let out = bed
        .command(VICTIM, nft)
        .args(args)
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Drop 8 % of incoming DATA (the kind byte, 4th of the UDP payload, is 3), with a counter
/// (read before and after each run: `nft reset` of rule counters needs a newer nft).
fn install_drop_rule(bed: &Testbed) {
    nft(bed, &["add", "table", "inet", "mpc"]);
    nft(
        bed,
        &[
            "add",
            "chain",
            "inet",
            "mpc",
            "in",
            "{ type filter hook input priority 0 ; }",
        ],
    );
    let ports = format!("{{ {PORT}, {GROUP_PORT} }}");
    nft(
        bed,
        &[
            "add", "rule", "inet", "mpc", "in", "udp", "dport", &ports, "@th,88,8", "3", "numgen",
            "random", "mod", "100", "<", "8", "counter", "drop",
        ],
    );
}

fn dropped(bed: &Testbed) -> u64 {
    let text = nft(bed, &["list", "chain", "inet", "mpc", "in"]);
    let after = text.split("counter packets ").nth(1).expect("a counter");
    after.split_whitespace().next().unwrap().parse().unwrap()
}

fn run(
    bed: &Testbed,
    transport: &str,
    order: &str,
    run_id: u64,
    dir: &TempDir,
) -> mpcomm::compare::Report {
    let peers = (0..HOSTS)
        .map(|h| SocketAddrV4::new(bed.host_addr(h), PORT).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let group = SocketAddrV4::new(
        Ipv4Addr::new(239, 255, 91, (run_id % 200) as u8 + 1),
        GROUP_PORT,
    );
    if transport == "multicast" {
        // As the lab does: the machine's one ARP table may be full of other testbeds' entries.
        bed.pin_multicast(*group.ip()).unwrap();
    }
    let procs: Vec<Proc> = (0..HOSTS)
        .map(|i| {
            let mut c = bed.command(i, env!("CARGO_BIN_EXE_mpcomm"));
            c.env_remove("NOTIFY_SOCKET");
            c.args(["peer", "--peers", &peers, "--id", &i.to_string()])
                .args(["--msgs", &MSGS.to_string(), "--transport", transport])
                .args(["--order", order, "--run-id", &run_id.to_string()])
                .args(["--group", &group.to_string()])
                .args(["--iface", &bed.host_addr(i).to_string()])
                .args(["--interval", "1..4", "--drain", "500ms"])
                .args(["--handshake-timeout", "20s", "--log-dir"])
                .arg(dir.path());
            Proc::spawn(c)
        })
        .collect();
    for p in procs {
        let (status, _) = p.finish(Duration::from_secs(60));
        assert!(status.success(), "a peer failed: {status}");
    }
    let logs: Vec<PeerLog> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(&format!("{run_id:016x}")))
        .map(|p| PeerLog::from_file(&p).unwrap())
        .collect();
    assert_eq!(logs.len(), HOSTS);
    analyse(&logs, &AnalyseOptions::default())
}

#[test]
fn reported_loss_equals_the_kernel_drop_counter() {
    if find_tool("nft").is_none() {
        eprintln!("SKIPPED: nft is not installed (apt-get install nftables)");
        return;
    }
    let runs: u64 = std::env::var("MPCOMM_NFT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    for mode in support::netns_modes() {
        let bed = Testbed::create_with(HOSTS, mode).unwrap();
        install_drop_rule(&bed);
        let dir = TempDir::new("nft");
        let how = if mode == Mode::Root { "root" } else { "userns" };
        for transport in ["fanout", "multicast"] {
            for k in 0..runs {
                let before = dropped(&bed);
                let run_id = 0x6e00 + k + if transport == "fanout" { 0 } else { 100 };
                let r = run(&bed, transport, "none", run_id, &dir);
                let counted = dropped(&bed) - before;
                let lost = r.per_peer[VICTIM].lost;
                eprintln!("{how} {transport} run {k}: nft dropped {counted}, reported lost {lost}");
                assert!(counted > 0, "8 % of {} DATA", HOSTS as u32 * MSGS);
                assert_eq!(lost, counted, "{how} {transport} run {k}");
                assert_eq!(r.lost, counted, "the other receivers lost nothing");
            }
            // With repair the same drops are found and filled.
            let before = dropped(&bed);
            let run_id = 0x6f00 + if transport == "fanout" { 0 } else { 100 };
            let r = run(&bed, transport, "fifo", run_id, &dir);
            let counted = dropped(&bed) - before;
            assert!(counted > 0);
            assert_eq!(
                (r.lost, r.duplicates),
                (0, 0),
                "{how} {transport}: repaired"
            );
            assert!(
                r.overhead.retransmissions >= counted,
                "every drop was resent"
            );
        }
        drop(bed);
    }
}
