//! Every refusal of the comparator carries a reason code in its frame header, and the kind
//! follows the code (`Busy` for transient ones); the peer's upload decides on the code. A real
//! service on loopback, real client sockets.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mpcomm::compare::{Server, ServerConfig, Stopper};
use mpcomm::peer::upload::{upload, UploadError};
use mpcomm::wire::frame::{read_frame_with, write_frame, Kind, Reason, HEADER_LEN};
use support::synthetic_log;

const PROMPT: Duration = Duration::from_secs(20);

/// A service in a thread, stopped and joined on drop (also when a test fails).
struct Running {
    addr: SocketAddr,
    stopper: Stopper,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    fn start(cfg: ServerConfig) -> Running {
        let server = Server::bind(cfg).unwrap();
        Running {
            addr: server.local_addr(),
            stopper: server.stopper(),
            thread: Some(std::thread::spawn(move || server.run(|_| {}))),
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, PROMPT).unwrap();
        s.set_read_timeout(Some(PROMPT)).unwrap();
        s
    }

    /// Send `bytes` raw on a new connection; the reply's kind, code and text.
    fn send_raw(&self, bytes: &[u8]) -> (Kind, Reason, String) {
        let mut s = self.connect();
        s.write_all(bytes).unwrap();
        reply(&mut s)
    }

    fn upload(&self, log: &[u8]) -> (Kind, Reason, String) {
        let mut framed = Vec::new();
        write_frame(&mut framed, Kind::Upload, log).unwrap();
        self.send_raw(&framed)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("server thread").expect("Ok on stop");
            }
        }
    }
}

fn reply(s: &mut TcpStream) -> (Kind, Reason, String) {
    let (h, text) = read_frame_with(s, 1 << 16).expect("a reply frame");
    (h.kind, h.reason, String::from_utf8(text).unwrap())
}

fn local() -> ServerConfig {
    let mut cfg = ServerConfig::local("127.0.0.1:0".parse().unwrap());
    cfg.quiet = true;
    cfg
}

#[test]
fn final_refusals_carry_their_code() {
    let mut cfg = local();
    cfg.max_upload_bytes = 4096;
    cfg.max_peers = 4;
    let svc = Running::start(cfg);

    let (k, r, text) = svc.upload(&synthetic_log(1, 0, 2, 1, &[(0, 0, 10)]));
    assert_eq!((k, r), (Kind::Accepted, Reason::Unstated), "{text}");
    let (k, r, text) = svc.upload(&synthetic_log(1, 0, 2, 1, &[(0, 0, 10)]));
    assert_eq!((k, r), (Kind::Rejected, Reason::Duplicate), "{text}");
    let (k, r, text) = svc.upload(&synthetic_log(1, 1, 3, 1, &[(0, 0, 10)]));
    assert_eq!((k, r), (Kind::Rejected, Reason::RunMismatch), "{text}");
    let (k, r, text) = svc.upload(&synthetic_log(2, 0, 9, 1, &[(0, 0, 10)]));
    assert_eq!((k, r), (Kind::Rejected, Reason::TooManyPeers), "{text}");
    let (k, r, text) = svc.upload(b"not a log");
    assert_eq!((k, r), (Kind::Rejected, Reason::BadLog), "{text}");
    let (k, r, text) = svc.upload(&[0; 5000]);
    assert_eq!((k, r), (Kind::Rejected, Reason::TooLarge), "{text}");
    let mut accepted = Vec::new();
    write_frame(&mut accepted, Kind::Accepted, b"hi").unwrap();
    let (k, r, text) = svc.send_raw(&accepted);
    assert_eq!((k, r), (Kind::Rejected, Reason::BadFrame), "{text}");
    // A header cut short by the client's close.
    let mut s = svc.connect();
    s.write_all(&accepted[..HEADER_LEN - 1]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (k, r, text) = reply(&mut s);
    assert_eq!((k, r), (Kind::Rejected, Reason::BadFrame), "{text}");
    // Completing run 1 reports it; a late log is refused as such.
    let (k, _, text) = svc.upload(&synthetic_log(1, 1, 2, 1, &[(0, 0, 10)]));
    assert_eq!(k, Kind::Accepted, "{text}");
    let (k, r, text) = svc.upload(&synthetic_log(1, 1, 2, 1, &[(0, 0, 10)]));
    assert_eq!((k, r), (Kind::Rejected, Reason::AlreadyReported), "{text}");
}

#[test]
fn transient_refusals_are_busy_with_their_code() {
    let mut cfg = local();
    cfg.max_conns_per_source = 1;
    let svc = Running::start(cfg);
    // One silent connection holds the source's only slot (its accept is seen once the
    // newcomer is refused: both go through the same accept round in order).
    let held = svc.connect();
    let (k, r, text) = svc.upload(&synthetic_log(3, 0, 2, 1, &[(0, 0, 10)]));
    assert_eq!((k, r), (Kind::Busy, Reason::SourceFull), "{text}");
    assert!(r.is_transient());
    drop(held);
}

#[test]
fn the_peer_decides_on_the_code() {
    let svc = Running::start(local());
    let addr = svc.addr.to_string();
    let log = synthetic_log(4, 0, 2, 1, &[(0, 0, 10)]);
    upload(&addr, &log, 1).unwrap();
    // The same log again, first attempt: another peer's log under the same id, final.
    match upload(&addr, &log, 3) {
        Err(UploadError::Rejected { reason, .. }) => {
            assert!(reason.contains("duplicate"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}
