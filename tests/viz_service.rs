//! The comparator service with `--html-dir`: one page per reported run, `run-<16 hex>.html`,
//! also for a run whose header claims a huge M (the page's memory follows the deliveries).

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpcomm::compare::{Server, ServerConfig};
use mpcomm::wire::frame::{write_frame, Kind};
use support::TempDir;

const PROMPT: Duration = Duration::from_secs(10);

fn upload(addr: std::net::SocketAddr, log: &[u8]) -> (Kind, String) {
    let mut s = support::comparator_connect(addr, PROMPT);
    write_frame(&mut s, Kind::Upload, log).unwrap();
    support::comparator_reply(&mut s)
}

#[test]
fn service_writes_one_page_per_run() {
    let dir = TempDir::new("viz-service");
    let pages = dir.path().join("pages");
    let mut cfg = ServerConfig::local("127.0.0.1:0".parse().unwrap());
    cfg.html_dir = Some(pages.clone());
    let server = Server::bind(cfg).unwrap();
    let addr = server.local_addr();
    let stopper = server.stopper();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || server.run(move |r| drop(tx.send(r.clone()))));

    // Run 0xab: 2 peers x 2 messages, the receivers disagree on the middle two.
    let a = [(0, 0, 10), (1, 0, 20), (0, 1, 30), (1, 1, 40)];
    let b = [(0, 0, 10), (0, 1, 20), (1, 0, 30), (1, 1, 40)];
    assert_eq!(
        upload(addr, &support::synthetic_log(0xab, 0, 2, 2, &a)).0,
        Kind::Accepted
    );
    assert_eq!(
        upload(addr, &support::synthetic_log(0xab, 1, 2, 2, &b)).0,
        Kind::Accepted
    );
    // Run 0xcd claims M = 2e9 but holds three deliveries.
    let m = 2_000_000_000;
    let c = [(0, 5, 10), (1, 7, 20), (0, 1_999_999_999, 30)];
    let started = Instant::now();
    assert_eq!(
        upload(addr, &support::synthetic_log(0xcd, 0, 2, m, &c)).0,
        Kind::Accepted
    );
    assert_eq!(
        upload(addr, &support::synthetic_log(0xcd, 1, 2, m, &c[..2])).0,
        Kind::Accepted
    );
    for _ in 0..2 {
        rx.recv_timeout(PROMPT).expect("a report in time");
    }
    assert!(
        started.elapsed() < PROMPT,
        "the huge-M run took {:?}",
        started.elapsed()
    );
    stopper.stop();
    thread.join().unwrap().unwrap();

    let page =
        std::fs::read_to_string(pages.join("run-00000000000000ab.html")).expect("page of 0xab");
    assert_eq!(page.matches("class=\"lane\"").count(), 2);
    assert_eq!(page.matches("class=\"strip\"").count(), 2);
    // (1,0) and (0,1) swapped places: highlighted at both receivers; (0,0), (1,1) agree.
    assert_eq!(page.matches("class=\"a hi\"").count(), 4);
    assert_eq!(page.matches("class=\"a\"").count(), 4);
    let huge = std::fs::metadata(pages.join("run-00000000000000cd.html")).expect("page of 0xcd");
    assert!(huge.len() < 200_000, "{} bytes", huge.len());
}
