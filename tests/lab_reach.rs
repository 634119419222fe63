//! `mpcomm lab --ipv6` and `--ssm` through the real binary, on the loopback and in network
//! namespaces: 4 peers × 20 messages lose nothing on either transport, and every report
//! carries the hop distance of every sender → receiver pair (0 here: one host, or one bridge).

mod support;

use std::time::Duration;

use mpcomm::netns::Mode;
use support::{mpcomm, Proc};

const PEERS: u64 = 4;
const MSGS: u64 = 20;

/// Run `mpcomm lab --peers 4 --msgs 20 --json …` (with `mode`: namespaces, `--netns` or the
/// private one of `--ipv6` multicast, made in that mode); its exit status, JSON reports and
/// stderr.
fn lab(mode: Option<Mode>, extra: &[&str]) -> (bool, Vec<serde_json::Value>, Vec<String>) {
    let mut c = mpcomm();
    c.args([
        "lab",
        "--peers",
        &PEERS.to_string(),
        "--msgs",
        &MSGS.to_string(),
    ])
    .args(["--interval", "1..4", "--json"])
    .args(extra);
    if let Some(mode) = mode {
        c.env(
            "MPCOMM_NETNS",
            match mode {
                Mode::Root => "root",
                Mode::UserNamespace => "userns",
            },
        );
    }
    let mut p = Proc::spawn(c);
    // Our own end of the stderr lines: `finish` consumes the process.
    let rx = std::mem::replace(&mut p.lines, std::sync::mpsc::channel().1);
    let (status, stdout) = p.finish(Duration::from_secs(120));
    // The reader thread ends at EOF, which follows the exit: bounded by it.
    let mut stderr = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(10)) {
        stderr.push(l);
    }
    let reports = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (status.success(), reports, stderr)
}

/// Both transports ran, nothing was lost, every message was delivered everywhere, and every
/// pair's hop distance is there and 0.
fn check_clean(reports: &[serde_json::Value], what: &str) {
    let transports: Vec<&str> = reports
        .iter()
        .map(|r| r["transport"].as_str().unwrap())
        .collect();
    assert_eq!(transports, ["fanout", "multicast"], "{what}");
    for r in reports {
        let t = r["transport"].as_str().unwrap();
        assert_eq!(r["lost"], 0, "{what} {t}: {r}");
        assert_eq!(r["duplicates"], 0, "{what} {t}: {r}");
        assert_eq!(r["deliveries"], PEERS * PEERS * MSGS, "{what} {t}");
        let hops = r["hops"].as_array().expect("a hops field");
        assert_eq!(hops.len() as u64, PEERS * PEERS, "{what} {t}: every pair");
        for h in hops {
            assert_eq!(
                (&h["min"], &h["max"]),
                (&0.into(), &0.into()),
                "{what} {t}: {h}"
            );
        }
    }
}

#[test]
fn ipv6_and_ssm_labs_in_namespaces_lose_nothing() {
    for mode in support::netns_modes() {
        for extra in [&["--ipv6"][..], &["--ipv6", "--ssm"][..], &["--ssm"][..]] {
            // --verbose: the comparator names every upload's source.
            let (ok, reports, stderr) =
                lab(Some(mode), &[&["--netns", "--verbose"][..], extra].concat());
            assert!(ok, "{extra:?} in {mode:?}: {stderr:?}");
            check_clean(&reports, &format!("{extra:?} in {mode:?}"));
            // The uploads travel in the lab's family: from the hosts' fd6d:7063:… addresses
            // to the bridge's, with --ipv6.
            let from_v6 = stderr
                .iter()
                .filter(|l| l.starts_with("compare: [fd6d:7063:") && l.contains("accepted"))
                .count();
            let want = if extra.contains(&"--ipv6") {
                2 * PEERS
            } else {
                0
            };
            assert_eq!(from_v6 as u64, want, "{extra:?} in {mode:?}: {stderr:?}");
        }
    }
}

#[test]
fn ssm_on_the_loopback_loses_nothing() {
    // Each lab peer sends from its own 127.a.b.x, so the (S,G) joins match on one host too.
    let (ok, reports, stderr) = lab(None, &["--ssm"]);
    assert!(ok, "{stderr:?}");
    check_clean(&reports, "--ssm on the loopback");
}

/// `lab --ipv6` without `--netns`: fan-out on the host's own ::1; multicast, which Linux's
/// loopback cannot carry, in a private network namespace whose lo can (once per mode that
/// works here), both transports losing nothing. That namespace has no name (it is not made
/// with `ip netns add`) and goes when the lab exits: nothing can be left behind.
#[test]
fn ipv6_on_the_loopback_loses_nothing_on_both_transports() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIP: this host has no IPv6 loopback");
        return;
    }
    let private_line = "running in a private network namespace whose loopback can";
    let (ok, reports, stderr) = lab(None, &["--ipv6", "--transport", "fanout"]);
    assert!(ok, "{stderr:?}");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["lost"], 0);
    assert_eq!(reports[0]["deliveries"], PEERS * PEERS * MSGS);
    assert!(
        !stderr.iter().any(|l| l.contains(private_line)),
        "fan-out needs no namespace: {stderr:?}"
    );
    // The group the lab picks is random; any ff12:: group tells whether this namespace's lo
    // carries IPv6 multicast (Linux's does not, unless someone configured it).
    let here = mpcomm::netns::loopback_carries_ipv6_multicast("ff12::77:1".parse().unwrap());
    let modes = support::netns_modes();
    if modes.is_empty() {
        eprintln!("SKIPPED the multicast half: no network namespaces here (reasons above)");
    }
    for mode in modes {
        let (ok, reports, stderr) = lab(Some(mode), &["--ipv6", "--transport", "both"]);
        assert!(ok, "--ipv6 in {mode:?}: {stderr:?}");
        check_clean(&reports, &format!("--ipv6 on the loopback ({mode:?})"));
        let said = stderr.iter().find(|l| l.contains(private_line));
        if here {
            assert!(said.is_none(), "this lo carries it already: {stderr:?}");
        } else {
            let said = said.unwrap_or_else(|| panic!("no namespace line: {stderr:?}"));
            assert!(said.ends_with(&format!("({})", mode.as_str())), "{said}");
        }
    }
}

/// What a run cannot be: refused by the peer with a clear error, before any socket is open.
#[test]
fn peer_refuses_mixed_families_and_groups_outside_the_ssm_range() {
    let (peers, _) = support::loopback_peers(1);
    let cases: [(&[&str], &str); 3] = [
        (
            &["--peers", &format!("{},[::1]:4999", peers[0]), "--id", "0"],
            "mixes IPv4 and IPv6",
        ),
        (
            &[
                "--peers",
                &peers[0].to_string(),
                "--transport",
                "multicast",
                "--ssm",
                "--group",
                "239.1.2.3:4999",
            ],
            "--ssm needs a source-specific group",
        ),
        (
            &[
                "--peers",
                &peers[0].to_string(),
                "--transport",
                "multicast",
                "--group",
                "[ff12::1]:4999",
            ],
            "of different families",
        ),
    ];
    for (args, want) in cases {
        let out = mpcomm()
            .arg("peer")
            .args(args)
            .args(["--msgs", "1", "--handshake-timeout", "1s"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
    }
}
