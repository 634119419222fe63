//! Nothing lost, nothing silent: a peer whose stderr reader is gone still uploads; a peer whose
//! log does not fit on disk uploads it from memory (exit 6, no temporary file left); output
//! into a closed pipe ends quietly with exit 0; a lab killed with SIGKILL leaves no peer, and
//! the next lab removes its temporary directory.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mpcomm::compare::Report;
use support::{join, loopback_peers, mpcomm, Proc, TempDir};

const WITHIN: Duration = Duration::from_secs(30);

/// A child killed and reaped on drop, whatever its stdio.
struct Reaped(Child);

impl Reaped {
    /// Wait for exit, polling with a deadline (`Child` has no timed wait).
    fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("pid {} did not exit within {within:?}", self.0.id());
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mpcomm compare --listen 127.0.0.1:0 --once --json` and its address.
fn comparator() -> (Proc, SocketAddr) {
    let mut c = mpcomm();
    c.args(["compare", "--listen", "127.0.0.1:0", "--once", "--json"]);
    let mut p = Proc::spawn(c);
    let line = p.wait_for_line("listening on", WITHIN);
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
    (p, addr)
}

/// The report a `--once` comparator printed when it exited.
fn report_of(p: Proc) -> Report {
    let (status, stdout) = p.finish(WITHIN);
    assert!(status.success(), "comparator: {status}");
    Report::from_json_line(stdout.trim()).expect("one JSON report")
}

fn peer(peers: &[SocketAddr], id: usize, msgs: u32, comparator: SocketAddr, dir: &Path) -> Command {
    let mut c = mpcomm();
    c.args(["peer", "--peers", &join(peers), "--id", &id.to_string()])
        .args(["--msgs", &msgs.to_string(), "--transport", "fanout"])
        .args(["--interval", "0..2", "--drain", "500ms", "--json"])
        .args(["--comparator", &comparator.to_string(), "--log-dir"])
        .arg(dir);
    c
}

fn summary(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

#[test]
fn a_peer_whose_stderr_reader_is_gone_still_uploads_and_exits_0() {
    let dir = TempDir::new("closed-stderr");
    let (cmp, addr) = comparator();
    let (peers, _) = loopback_peers(2);
    let other = Proc::spawn(peer(&peers, 1, 200, addr, dir.path()));

    let (reader, writer) = std::io::pipe().unwrap();
    let mut cmd = peer(&peers, 0, 200, addr, dir.path());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(writer);
    let mut closed = Reaped(cmd.spawn().unwrap());
    drop(cmd); // our copy of the write end
               // Read up to the readiness line, then close the read end as a killed agent would: every
               // later line (the "done" line comes after the 500 ms quiet period) meets EPIPE.
    let mut lines = BufReader::new(reader);
    let mut line = String::new();
    while !line.contains("mpcomm peer: ready") {
        line.clear();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "stderr ended before ready"
        );
    }
    drop(lines);

    let status = closed.wait(WITHIN);
    let mut stdout = String::new();
    closed
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(0), "peer with closed stderr: {status}");
    let s0 = summary(&stdout);
    assert_eq!(s0["uploaded"], true, "{s0}");
    let (st1, out1) = other.finish(WITHIN);
    assert!(st1.success(), "other peer: {st1}");
    let s1 = summary(&out1);
    let r = report_of(cmp);
    assert!(r.missing_peers.is_empty(), "{:?}", r.missing_peers);
    assert_eq!(
        r.deliveries,
        s0["deliveries"].as_u64().unwrap() + s1["deliveries"].as_u64().unwrap()
    );
    eprintln!(
        "MEASURED: peer with a closed stderr pipe: exit 0, uploaded; the comparator holds both logs ({} deliveries)",
        r.deliveries
    );
}

/// How the full-disk peer gets its 64 KiB tmpfs as `--log-dir`.
enum SmallDisk {
    /// We are root: mounted here, unmounted on drop.
    Mounted(TempDir),
    /// A user + mount namespace of the peer's own (`unshare -rm`), invisible to us.
    Private(TempDir),
}

impl SmallDisk {
    fn new() -> Option<SmallDisk> {
        let dir = TempDir::new("full-disk");
        // MPCOMM_TEST_DISK=userns tests the user-namespace path as root.
        let force_userns = std::env::var("MPCOMM_TEST_DISK").is_ok_and(|v| v == "userns");
        // SAFETY: geteuid has no preconditions.
        let mounted = !force_userns
            && unsafe { libc::geteuid() } == 0
            && Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
        if mounted {
            return Some(SmallDisk::Mounted(dir));
        }
        let userns = Command::new("unshare")
            .args(["-rm", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if userns {
            return Some(SmallDisk::Private(dir));
        }
        eprintln!("SKIPPED: not root and no user namespaces (unshare -rm), so no small tmpfs");
        None
    }

    fn path(&self) -> &Path {
        match self {
            SmallDisk::Mounted(d) | SmallDisk::Private(d) => d.path(),
        }
    }

    /// `peer` run on the small disk; on exit it lists what is left there on stderr
    /// (`LEFT: name` lines), because in a private mount namespace only it can see them.
    fn wrap(&self, peer: Command) -> Command {
        let mount = match self {
            SmallDisk::Mounted(_) => "",
            SmallDisk::Private(_) => "mount -t tmpfs -o size=64k tmpfs \"$0\" || exit 99;",
        };
        let script = format!(
            "{mount} \"$@\"; rc=$?; for f in \"$0\"/*; do [ -e \"$f\" ] && echo \"LEFT: $f\" >&2; done; exit $rc"
        );
        let mut c = match self {
            SmallDisk::Mounted(_) => Command::new("sh"),
            SmallDisk::Private(_) => {
                let mut u = Command::new("unshare");
                u.args(["-rm", "sh"]);
                u
            }
        };
        c.arg("-c").arg(script).arg(self.path());
        c.arg(peer.get_program()).args(peer.get_args());
        c.env_remove("NOTIFY_SOCKET");
        c
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let SmallDisk::Mounted(d) = self {
            let _ = Command::new("umount").arg(d.path()).status();
        }
    }
}

#[test]
fn a_peer_whose_log_does_not_fit_uploads_it_from_memory_and_exits_6() {
    let Some(disk) = SmallDisk::new() else {
        return;
    };
    let logs = TempDir::new("full-disk-other");
    let (cmp, addr) = comparator();
    let (peers, _) = loopback_peers(2);
    // 2 × 1000 records of 48 bytes: 96 KB, more than the 64 KiB disk holds.
    let msgs = 1000;
    let other = Proc::spawn(peer(&peers, 1, msgs, addr, logs.path()));
    let mut full = Proc::spawn(disk.wrap(peer(&peers, 0, msgs, addr, disk.path())));
    full.wait_for_line("cannot write log", WITHIN);
    full.wait_for_line("(from memory; not on disk)", WITHIN);
    let left: Vec<String> = rest_of_stderr(&mut full, WITHIN)
        .into_iter()
        .filter(|l| l.starts_with("LEFT: "))
        .collect();
    let (status, stdout) = full.finish(WITHIN);
    assert_eq!(left, Vec::<String>::new(), "files left on the full disk");
    let (st1, out1) = other.finish(WITHIN);
    assert!(st1.success(), "other peer: {st1}");
    let r = report_of(cmp);
    let s0 = summary(&stdout);
    let s1 = summary(&out1);
    assert_eq!(status.code(), Some(6), "peer on a full disk: {status}");
    assert_eq!(s0["uploaded"], true, "{s0}");
    assert_eq!(s0["log"], serde_json::Value::Null, "{s0}");
    assert!(r.missing_peers.is_empty(), "{:?}", r.missing_peers);
    let delivered = s0["deliveries"].as_u64().unwrap();
    assert_eq!(r.deliveries, delivered + s1["deliveries"].as_u64().unwrap());
    assert!(
        delivered * 48 > 64 * 1024,
        "the log must not fit: {delivered} records"
    );
    eprintln!(
        "MEASURED: peer with a 64 KiB tmpfs as --log-dir ({delivered} records): exit 6, uploaded from memory, nothing left on the disk"
    );
}

/// Every stderr line until it closes (the process exited), within a deadline.
fn rest_of_stderr(p: &mut Proc, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut rest = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match p.lines.recv_timeout(left) {
            Ok(l) => rest.push(l),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return rest,
            Err(e) => panic!("stderr still open after {within:?}: {e}"),
        }
    }
}
