//! The emulated WAN through the real binary: delays match the profile, and the ordering problem
//! shows up under gcp8 and not under lan.

mod support;

use std::time::Duration;

use mpcomm::wan::Profile;
use support::{mpcomm, Proc};

fn lab(extra: &[&str]) -> Vec<serde_json::Value> {
    let mut c = mpcomm();
    c.args(["lab", "--json", "--transport", "fanout", "--drain", "500ms"])
        .args(extra);
    let (status, stdout) = Proc::spawn(c).finish(Duration::from_secs(120));
    assert!(status.success(), "lab failed: {status}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn per_pair_latency_follows_the_profile() {
    let scale = 0.1;
    let r = &lab(&[
        "--peers",
        "8",
        "--msgs",
        "20",
        "--wan",
        "gcp8",
        "--time-scale",
        "0.1",
        "--matrix",
        "--seed",
        "3",
    ])[0];
    assert_eq!(r["wan"], "gcp8");
    assert_eq!(r["time_scale"], scale);
    let profile = Profile::load("gcp8").unwrap();
    let zones: Vec<usize> = r["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| profile.zone_index(z.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        zones,
        (0..8).collect::<Vec<_>>(),
        "round-robin in file order"
    );
    let p50 = &r["matrix"]["latency_p50_us"];
    let mut worst: f64 = 0.0;
    for recv in 0..8 {
        for send in 0..8 {
            let want_us = profile.one_way(zones[send], zones[recv]).as_secs_f64() * scale * 1e6;
            let got_us = p50[recv][send].as_f64().unwrap();
            worst = worst.max((got_us - want_us).abs());
        }
    }
    eprintln!("worst per-pair p50 error: {worst:.0} us");
    // The bar is 1 ms on an idle machine; tests run in parallel on 2 cores, so allow 3 ms here.
    assert!(worst < 3_000.0, "per-pair p50 off by {worst:.0} us");
}

#[test]
fn gcp8_shows_the_problem_and_lan_does_not() {
    let common = [
        "--peers",
        "6",
        "--msgs",
        "40",
        "--runs",
        "2",
        "--seed",
        "11",
        "--time-scale",
        "0.1",
    ];
    let wan: Vec<_> = lab(&[&common[..], &["--wan", "gcp8"]].concat());
    let lan: Vec<_> = lab(&[&common[..], &["--wan", "lan"]].concat());
    let frac = |rs: &[serde_json::Value]| {
        rs.iter()
            .map(|r| r["out_of_order_rounds"].as_f64().unwrap() / r["rounds"].as_f64().unwrap())
            .sum::<f64>()
            / rs.len() as f64
    };
    let (w, l) = (frac(&wan), frac(&lan));
    eprintln!("out-of-order fraction: gcp8 {w:.3}, lan {l:.3}");
    assert!(w >= 0.9, "gcp8: {w}");
    assert!(l < w / 2.0, "lan {l} vs gcp8 {w}");
    for r in wan.iter().chain(&lan) {
        assert_eq!(r["lost"], 0);
    }
}
