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

/// A pipe (read end, write end), both close-on-exec so no other child inherits them.
fn pipe() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors that nothing else owns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: just created, owned here only.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
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

    let (reader, writer) = pipe();
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

/// Run `mpcomm args…` with stdout a pipe whose read end is already closed (`| head` gone);
/// returns its exit code and stderr.
fn into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = pipe();
    drop(reader);
    let mut cmd = mpcomm();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let mut child = Reaped(cmd.spawn().unwrap());
    drop(cmd);
    let mut err = child.0.stderr.take().unwrap();
    let mut stderr = String::new();
    err.read_to_string(&mut stderr).unwrap();
    (child.wait(WITHIN).code(), stderr)
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_with_exit_0() {
    let dir = TempDir::new("closed-stdout");
    // Two runs of 2 peers × 3 messages, analysed into a results file.
    let mut files = Vec::new();
    for run in 1..=2u64 {
        for p in 0..2u16 {
            let recs: Vec<(u16, u32, u64)> = (0..3)
                .flat_map(|q| (0..2).map(move |s| (s, q, 1_000)))
                .collect();
            let f = dir.path().join(format!("r{run}p{p}.mplog"));
            std::fs::write(&f, support::synthetic_log(run, p, 2, 3, &recs)).unwrap();
            files.push(f.display().to_string());
        }
    }
    let results = dir.path().join("results.jsonl").display().to_string();
    let mut args = vec!["compare", "--results", &results, "--logs"];
    args.extend(files.iter().map(String::as_str));
    let out = mpcomm().args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let key = dir.path().join("key");
    let out = mpcomm().args(["c2", "keygen"]).output().unwrap();
    std::fs::write(&key, out.stdout).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = key.display().to_string();
    let mut serve = mpcomm();
    serve
        .args(["c2", "serve", "--no-prompt", "--listen", "127.0.0.1:0"])
        .args(["--compare-listen", "127.0.0.1:0", "--key-file", &key])
        .args(["--results", &format!("{}/c2.jsonl", dir.path().display())]);
    let mut serve = Proc::spawn(serve);
    let line = serve.wait_for_line("listening on ", WITHIN);
    let ctl = line.split("listening on ").nth(1).unwrap();
    let ctl = ctl.split(',').next().unwrap().to_string();

    for args in [
        &["report", "--json", &results][..],
        &["report", &results],
        &["log", "dump", "--csv", &files[0]],
        &["c2", "keygen"],
        &["c2", "status", "--controller", &ctl, "--key-file", &key],
    ] {
        let (code, stderr) = into_closed_pipe(args);
        assert_eq!((code, stderr.as_str()), (Some(0), ""), "mpcomm {args:?}");
    }
}

/// Live (not zombie) processes whose command line mentions `needle`.
fn running_with(needle: &str) -> Vec<(u32, String)> {
    let pids = std::fs::read_dir("/proc").unwrap();
    pids.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            (state != 'Z' && cmd.contains(needle)).then_some((pid, cmd))
        })
        .collect()
}

/// `mpcomm lab` directories in `tmp`.
fn lab_dirs(tmp: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("mpcomm-lab-"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_lab_killed_with_sigkill_leaves_no_peer_and_the_next_lab_removes_its_directory() {
    // The labs' own temporary directory: their peers' --log-dir names it, so their command
    // lines do, and no other test's lab shares it.
    let tmp = TempDir::new("lab-sigkill");
    let needle = tmp.path().display().to_string();
    let lab = |extra: &[&str]| {
        let mut c = mpcomm();
        c.env("TMPDIR", tmp.path())
            .args(["lab", "--verbose", "--peers", "4", "--transport", "fanout"])
            .args(extra);
        c
    };
    // 400 messages at 5..10 ms: the run lasts seconds.
    let mut p = Proc::spawn(lab(&["--msgs", "400", "--interval", "5..10"]));
    for _ in 0..4 {
        p.wait_for_line("mpcomm peer: ready ", WITHIN);
    }
    let peers = running_with(&needle);
    assert_eq!(peers.len(), 4, "{peers:#?}");
    let killed = lab_dirs(tmp.path());
    assert_eq!(killed.len(), 1, "the lab's directory: {killed:?}");

    p.child.kill().unwrap(); // SIGKILL: no handler, no Drop runs in the lab
    p.child.wait().unwrap();
    let killed_at = Instant::now();
    let mut left = running_with(&needle);
    while !left.is_empty() && killed_at.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
        left = running_with(&needle);
    }
    assert_eq!(left, vec![], "peers still running 1 s after the lab died");
    let gone_in = killed_at.elapsed();
    assert_eq!(
        lab_dirs(tmp.path()),
        killed,
        "left behind by the killed lab"
    );

    // The next lab removes it; a directory of a live pid (ours) stays.
    let live = tmp
        .path()
        .join(format!("mpcomm-lab-{}-0000beef", std::process::id()));
    std::fs::create_dir(&live).unwrap();
    let next = lab(&["--msgs", "5", "--interval", "0..1", "--drain", "100ms"]);
    let (status, _) = Proc::spawn(next).finish(WITHIN);
    assert!(status.success(), "next lab: {status}");
    let live_name = live.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(lab_dirs(tmp.path()), vec![live_name]);
    eprintln!(
        "MEASURED: lab SIGKILLed mid-run: its 4 peers gone within {gone_in:?}; its directory {} removed by the next lab",
        killed[0]
    );
}

#[test]
fn a_log_neither_written_nor_uploaded_is_reported_lost_with_exit_6() {
    let dir = TempDir::new("log-lost");
    // Below a regular file: no directory can be created there, not even by root.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let unwritable = file.join("logs");
    let (peers, _) = loopback_peers(1);
    // A port with nobody listening: connection refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for (extra, says) in [
        (
            vec![
                "--comparator",
                &closed.to_string(),
                "--upload-attempts",
                "1",
            ],
            "The log is lost",
        ),
        (vec![], "the log is lost: not written, and no --comparator"),
    ] {
        let mut c = mpcomm();
        c.args(["peer", "--peers", &join(&peers), "--msgs", "5"])
            .args(["--interval", "0..1", "--drain", "100ms", "--log-dir"])
            .arg(&unwritable)
            .args(&extra);
        let mut p = Proc::spawn(c);
        p.wait_for_line("cannot create log directory", WITHIN);
        p.wait_for_line(says, WITHIN);
        let (status, _) = p.finish(WITHIN);
        assert_eq!(status.code(), Some(6), "{extra:?}: {status}");
    }
}
