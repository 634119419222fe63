//! Helpers for tests that drive the real `mpcomm` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn mpcomm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mpcomm"));
    c.env_remove("NOTIFY_SOCKET");
    c
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "mpcomm-test-{tag}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process that is killed and reaped when dropped; its stderr lines arrive on a channel.
pub struct Proc {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null());
        Proc::spawn_keeping_stdin(cmd)
    }

    /// As `spawn`, with the stdin `cmd` was given (`Stdio::piped()` for `--start-gate`: drop
    /// `child.stdin` to open the gate).
    pub fn spawn_keeping_stdin(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mpcomm");
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("    | {l}");
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait (at most `within`) for a stderr line containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line containing {needle:?} within {within:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Wait (bounded) for exit; returns status and stdout.
    pub fn finish(mut self, within: Duration) -> (ExitStatus, String) {
        let mut out = self.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut s);
            let _ = tx.send(s);
        });
        // stdout closes when the process exits (or closes it on purpose, which ours never do).
        let stdout = match rx.recv_timeout(within) {
            Ok(s) => s,
            Err(_) => panic!(
                "process did not exit within {within:?}; stderr so far {:?}",
                self.seen
            ),
        };
        let status = self.child.wait().unwrap();
        (status, stdout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` loopback peer addresses that no other test uses: 127.a.b.(i+1) with a random a.b.
pub fn loopback_peers(n: usize) -> (Vec<SocketAddr>, SocketAddr) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (a, b) = (rand::random::<u8>().max(1), rand::random::<u8>().max(1));
    let peers = (0..n)
        .map(|i| {
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(127, a, b, i as u8 + 1),
                port,
            ))
        })
        .collect();
    let group = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(239, 255, a, b), port));
    (peers, group)
}

pub fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The network-namespace modes that work here (root, user namespace), each reason for one that
/// does not printed; a test runs once per returned mode and passes, saying so, when none works.
pub fn netns_modes() -> Vec<mpcomm::netns::Mode> {
    use mpcomm::netns::{support_of, Mode};
    let mut ok = Vec::new();
    for mode in [Mode::Root, Mode::UserNamespace] {
        match support_of(mode) {
            Ok(()) => ok.push(mode),
            Err(why) => eprintln!("netns test: {} mode not available: {why}", mode.as_str()),
        }
    }
    if ok.is_empty() {
        eprintln!("SKIPPED: no way to make network namespaces here (see reasons above)");
    }
    ok
}

/// The header of a synthetic log of `run` written by `peer` (N peers × M messages, fanout,
/// real time, no ordering, no repair).
pub fn synthetic_header(run: u64, peer: u16, n: u16, m: u32) -> mpcomm::wire::log::LogHeader {
    mpcomm::wire::log::LogHeader {
        run_id: run,
        peer_id: peer,
        peers: n,
        msgs: m,
        transport: Some(mpcomm::wire::Transport::Fanout),
        time_scale_ppm: 1_000_000,
        ..Default::default()
    }
}

/// A valid delivery log of `run` written by `peer` (N peers × M messages), one record per
/// (sender, seq, one-way latency in ns), in the order given.
pub fn synthetic_log(run: u64, peer: u16, n: u16, m: u32, recs: &[(u16, u32, u64)]) -> Vec<u8> {
    use mpcomm::wire::log::{encode, Record};
    let h = synthetic_header(run, peer, n, m);
    let recs: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, &(sender, seq, latency))| Record {
            sender,
            seq,
            send_ns: 1_000,
            recv_ns: 1_000 + latency,
            deliver_ns: 1_000 + latency,
            kernel_stamp: false,
            // No ordering stage: delivered on arrival.
            arrive_ns: 1_000 + latency,
            arrival: i as u32,
            retransmitted: false,
            ttl: 0,
        })
        .collect();
    encode(&h, &recs)
}

/// A connection to a comparator whose reads give up after `timeout`.
pub fn comparator_connect(addr: SocketAddr, timeout: Duration) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).expect("connect to the comparator");
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

/// The comparator's one reply frame: (kind, message).
pub fn comparator_reply(s: &mut std::net::TcpStream) -> (mpcomm::wire::frame::Kind, String) {
    let (kind, payload) = mpcomm::wire::frame::read_frame(s, 1 << 16).expect("a reply frame");
    (kind, String::from_utf8(payload).expect("UTF-8 reply"))
}

/// `mpcomm log dump --csv` of each log, written next to it as `.csv`; the CSV paths.
pub fn csv_dumps(logs: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
    logs.iter()
        .map(|log| {
            let out = mpcomm()
                .args(["log", "dump", "--csv"])
                .arg(log)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                text.lines().next(),
                Some("receiver,position,sender,seq,send_ns,recv_ns,deliver_ns,arrive_ns,arrival,retransmitted"),
                "the documented columns"
            );
            let csv = log.with_extension("csv");
            std::fs::write(&csv, text).unwrap();
            csv
        })
        .collect()
}

/// `tests/scripts/NAME N M CSV…`, the independent recomputation; its stdout.
pub fn run_script(name: &str, n: u64, m: u64, csvs: &[std::path::PathBuf]) -> String {
    let script = format!("{}/tests/scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(script)
        .args([n.to_string(), m.to_string()])
        .args(csvs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every src= and href= value in the page (quoted or not).
pub fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=", "href="] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '>')
                .unwrap_or(rest.len());
            out.push(rest[..end].trim_matches(['"', '\'']).to_owned());
        }
    }
    out
}
