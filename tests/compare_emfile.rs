//! The comparator keeps accepting after running out of file descriptors: the connection that
//! was pending when `accept` failed raises no new readiness event (edge-triggered), so the
//! service must come back to it by itself. Its own test binary: it lowers the process's
//! descriptor limit.

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mpcomm::compare::{Server, ServerConfig};
use mpcomm::wire::frame::{read_frame, write_frame, Kind};
use mpcomm::wire::log::{encode, LogHeader, Record};

const PROMPT: Duration = Duration::from_secs(20);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_connection_pending_when_accept_failed_is_still_served() {
    let server = Server::bind(ServerConfig::local("127.0.0.1:0".parse().unwrap())).unwrap();
    let (addr, stats, stopper) = (server.local_addr(), server.stats(), server.stopper());
    let thread = std::thread::spawn(move || server.run(|_| {}));

    // Lower the soft limit near what is open, then fill it up, leaving one for the client.
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let low = libc::rlimit {
        rlim_cur: (open_fds() + 32) as libc::rlim_t,
        rlim_max: old.rlim_max,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let probe = std::fs::File::open("/dev/null").unwrap();
    let mut fillers: Vec<OwnedFd> = Vec::new();
    loop {
        let fd = unsafe { libc::dup(probe.as_raw_fd()) };
        if fd < 0 {
            break;
        }
        fillers.push(unsafe { OwnedFd::from_raw_fd(fd) });
        assert!(fillers.len() < 4096, "the limit did not apply");
    }
    drop(fillers.pop());
    let mut client = TcpStream::connect(addr).expect("connect with the last descriptor");
    // The service tried to accept it and had no descriptor.
    let t0 = Instant::now();
    while stats.accept_errors() == 0 {
        assert!(t0.elapsed() < PROMPT, "accept never failed");
        std::thread::yield_now();
    }
    drop(fillers);
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);

    // No new connection comes to wake it: the pending one must be served anyway.
    let log = encode(
        &LogHeader {
            run_id: 0xe,
            peer_id: 0,
            peers: 1,
            msgs: 1,
            ..LogHeader::default()
        },
        &[Record {
            sender: 0,
            seq: 0,
            send_ns: 1,
            recv_ns: 2,
            deliver_ns: 3,
            kernel_stamp: false,
            ..Record::default()
        }],
    );
    client.set_read_timeout(Some(PROMPT)).unwrap();
    write_frame(&mut client, Kind::Upload, &log).unwrap();
    client.flush().unwrap();
    let (kind, msg) = read_frame(&mut client, 1 << 16).expect("a reply frame");
    let msg = String::from_utf8(msg).unwrap();
    assert_eq!(kind, Kind::Accepted, "{msg}");
    assert!(msg.contains("complete"), "{msg}");

    stopper.stop();
    thread.join().unwrap().unwrap();
}
