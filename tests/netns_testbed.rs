//! Real network namespaces: hosts reach each other, multicast crosses the bridge, nothing is
//! left behind after teardown or after the creator is killed.
//!
//! Every test runs once per mode that works here (as root: root and user namespace; otherwise
//! user namespace) and prints a reason and passes when none does. Programs inside the
//! namespaces are this test binary again, re-executed with `MPC_NETNS_ROLE` set (see
//! `role_entry`), so no `ping` or `python3` is needed.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpcomm::netns::{support_of, Mode, Testbed};

const ROLE_ENV: &str = "MPC_NETNS_ROLE";
const ECHO_PORT: u16 = 7777;
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 0, 7);
const GROUP_PORT: u16 = 7788;

fn modes() -> Vec<Mode> {
    support::netns_modes()
}

// ---------------------------------------------------------------------------------------------
// Children: a killed-on-drop process whose stdout lines arrive on a channel.

struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    what: String,
}

impl Proc {
    fn spawn(mut cmd: Command, what: &str) -> Proc {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let out: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // libtest prints `test role_entry ... ` without a newline before the role runs.
                if let Some(at) = line.find("ROLE ") {
                    if tx.send(line[at + 5..].to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        Proc {
            child,
            lines,
            what: what.into(),
        }
    }

    /// The next `ROLE …` line, or panic at the deadline / on exit.
    fn line(&self, within: Duration) -> String {
        self.lines
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("{}: no line within {within:?} ({e})", self.what))
    }

    fn expect(&self, prefix: &str, within: Duration) -> String {
        let l = self.line(within);
        assert!(
            l.starts_with(prefix),
            "{}: expected {prefix:?}, got {l:?}",
            self.what
        );
        l
    }

    /// Wait for EOF on the child's stdout (the reader thread then drops its sender), then for
    /// its exit status, which must be success.
    fn wait_ok(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => continue, // a further line: keep draining
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("{} still running", self.what),
            }
        }
        let st = self.child.wait().unwrap();
        assert!(st.success(), "{} exited with {st}", self.what);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This test binary, in role `role`, inside host i.
fn role_in(tb: &Testbed, i: usize, role: &str) -> Proc {
    let mut cmd = tb.command(i, std::env::current_exe().unwrap());
    cmd.args(["--exact", "role_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role);
    Proc::spawn(
        cmd,
        &format!("{role:?} in host {i} ({})", tb.mode().as_str()),
    )
}

// ---------------------------------------------------------------------------------------------
// Roles, run in the re-executed test binary. Each prints `ROLE …` lines and ends by itself.

#[test]
fn role_entry() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return; // an ordinary test run: nothing to do
    };
    let args: Vec<&str> = role.split_whitespace().collect();
    match args.as_slice() {
        ["echo"] => role_echo(),
        ["ping", targets @ ..] => role_ping(targets),
        ["isolated"] => role_isolated(),
        ["mrecv", ifaddr] => role_mrecv(ifaddr.parse().unwrap()),
        ["msend"] => role_msend(),
        ["tcp-send", addr] => role_tcp_send(addr),
        ["hold", mode] => role_hold(mode),
        other => panic!("unknown role {other:?}"),
    }
}

fn say(s: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ROLE {s}").unwrap();
    out.flush().unwrap();
}

/// UDP echo on ECHO_PORT until `quit` or 30 s.
fn role_echo() {
    let sock = UdpSocket::bind(("0.0.0.0", ECHO_PORT)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    say("ready");
    let end = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 1500];
    while Instant::now() < end {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if &buf[..n] == b"quit" {
            return;
        }
        sock.send_to(&buf[..n], from).unwrap();
    }
}

/// Send to every target's echo port, retransmitting every 100 ms, at most 3 s per target.
fn role_ping(targets: &[&str]) {
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 64];
    for t in targets {
        let addr = SocketAddrV4::new(t.parse().unwrap(), ECHO_PORT);
        let probe = format!("ping {t}");
        let start = Instant::now();
        let mut answered = false;
        for _ in 0..30 {
            sock.send_to(probe.as_bytes(), addr).unwrap();
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                if &buf[..n] == probe.as_bytes() && from == addr.into() {
                    answered = true;
                    break;
                }
            }
        }
        assert!(answered, "no echo from {addr}");
        say(format!("ok {t} {:?}", start.elapsed()));
    }
}

/// No route out of the testbed: connecting a UDP socket (which sends nothing) to a
/// documentation address must fail with "network unreachable".
fn role_isolated() {
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    let err = sock.connect("192.0.2.1:9").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
    say("isolated");
}

/// Join GROUP on the interface with `ifaddr`, show the kernel's membership, wait for one
/// datagram (10 s).
fn role_mrecv(ifaddr: Ipv4Addr) {
    let sock = UdpSocket::bind(("0.0.0.0", GROUP_PORT)).unwrap();
    sock.join_multicast_v4(&GROUP, &ifaddr).unwrap();
    // /proc/net/igmp lists groups as little-endian hex per interface; this is our namespace's.
    let igmp = std::fs::read_to_string("/proc/net/igmp").unwrap();
    let hex = format!("{:08X}", u32::from_le_bytes(GROUP.octets()));
    let on_eth0 = igmp
        .split("\n")
        .skip_while(|l| !l.contains("eth0"))
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .any(|l| l.contains(&hex));
    assert!(on_eth0, "group {GROUP} ({hex}) not joined on eth0:\n{igmp}");
    say("ready");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("no multicast datagram within 10 s");
    say(format!(
        "got {} from {}",
        String::from_utf8_lossy(&buf[..n]),
        from.ip()
    ));
}

/// Send to GROUP without IP_MULTICAST_IF, so the 224.0.0.0/4 route must pick eth0.
fn role_msend() {
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    for _ in 0..3 {
        sock.send_to(b"hello-group", (GROUP, GROUP_PORT)).unwrap();
    }
    say("sent");
}

/// Connect to a listener of the test process inside the testbed and say hello.
fn role_tcp_send(addr: &str) {
    use std::io::Write;
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
            .unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(format!("hello from {}", me.ip()).as_bytes())
        .unwrap();
    say("sent");
}

/// Create a testbed with a process inside host 0, report, then wait (60 s at most) to be killed.
fn role_hold(mode: &str) {
    // A shell that starts the tests in the background without job control leaves SIGINT
    // ignored (inherited through exec); the creator under test must be one that SIGINT ends.
    // SAFETY: signal(2) with SIG_DFL, before any thread of this role starts.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let mode = if mode == "root" {
        Mode::Root
    } else {
        Mode::UserNamespace
    };
    let tb = Testbed::create_with(2, mode).unwrap();
    let inner = role_in(&tb, 0, "echo");
    inner.expect("ready", Duration::from_secs(10));
    say(format!(
        "prefix {} inner {} guard {}",
        tb.prefix(),
        inner.child.id(),
        tb.guard_pid().unwrap()
    ));
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line); // returns on EOF too
    assert_ne!(
        line.trim(),
        "panic",
        "asked to panic with the testbed alive"
    );
    std::mem::forget(inner); // leave it to the guard, as a killed creator would
}

// ---------------------------------------------------------------------------------------------
// Checks from outside.

/// Our namespaces still in `ip netns list` and links with the prefix in `ip link` (root view).
fn leftovers(prefix: &str) -> Vec<String> {
    let ip = mpcomm::netns::find_tool("ip").unwrap();
    let mut found = Vec::new();
    for args in [&["netns", "list"][..], &["-o", "link"][..]] {
        let out = Command::new(&ip).args(args).output().unwrap();
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(prefix))
                .map(String::from),
        );
    }
    found
}

/// True once `pid` no longer exists (or is a zombie nobody has reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

/// Wait for any process (not only a child) to exit: a pidfd becomes readable when it does.
fn wait_exit(pid: u32, within: Duration, what: &str) {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::ESRCH),
            "pidfd_open({pid}): {e}"
        );
        return; // already gone and reaped
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + within;
    let ready = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
        if n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break n > 0;
        }
    };
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    assert!(ready, "{what} (pid {pid}) still running after {within:?}");
}

// ---------------------------------------------------------------------------------------------

#[test]
fn four_hosts_reach_each_other_and_nothing_else() {
    for mode in modes() {
        let tb = Testbed::create_with(4, mode).unwrap();
        assert_eq!(tb.hosts(), 4);
        let addrs: Vec<String> = (0..4).map(|i| tb.host_addr(i).to_string()).collect();
        assert_eq!(tb.iface(0), "eth0");
        let echoes: Vec<Proc> = (0..4).map(|i| role_in(&tb, i, "echo")).collect();
        for e in &echoes {
            e.expect("ready", Duration::from_secs(10));
        }
        let role = format!("ping {}", addrs.join(" "));
        let mut pings: Vec<Proc> = (0..4).map(|i| role_in(&tb, i, &role)).collect();
        for (i, p) in pings.iter_mut().enumerate() {
            for a in &addrs {
                let l = p.expect("ok ", Duration::from_secs(10));
                assert!(l.starts_with(&format!("ok {a} ")), "host {i}: {l}");
            }
            p.wait_ok(Duration::from_secs(10));
        }
        let mut iso = role_in(&tb, 2, "isolated");
        iso.expect("isolated", Duration::from_secs(10));
        iso.wait_ok(Duration::from_secs(10));
        drop(echoes);
        let prefix = tb.prefix().to_string();
        tb.teardown().unwrap();
        assert_eq!(leftovers(&prefix), Vec::<String>::new());
        eprintln!("{}: 4 hosts, 16 echo pairs ok", mode.as_str());
    }
}

#[test]
fn multicast_from_host_0_reaches_members_on_hosts_1_to_3() {
    for mode in modes() {
        let tb = Testbed::create_with(4, mode).unwrap();
        tb.pin_multicast(GROUP).unwrap(); // else a dynamic entry, in a table that may be full
        let receivers: Vec<Proc> = (1..4)
            .map(|i| role_in(&tb, i, &format!("mrecv {}", tb.host_addr(i))))
            .collect();
        for r in &receivers {
            r.expect("ready", Duration::from_secs(10));
        }
        let mut sender = role_in(&tb, 0, "msend");
        sender.expect("sent", Duration::from_secs(10));
        sender.wait_ok(Duration::from_secs(10));
        for mut r in receivers {
            let l = r.expect("got ", Duration::from_secs(10));
            assert_eq!(l, format!("got hello-group from {}", tb.host_addr(0)));
            r.wait_ok(Duration::from_secs(10));
        }
        tb.teardown().unwrap();
        eprintln!("{}: multicast 0 -> 1,2,3 ok", mode.as_str());
    }
}

#[test]
fn hosts_reach_a_listener_of_the_creating_process() {
    use std::io::Read;
    for mode in modes() {
        let tb = Testbed::create_with(3, mode).unwrap();
        let listener = tb.tcp_listener(0).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(addr.ip(), std::net::IpAddr::V4(tb.service_addr()));
        let mut sender = role_in(&tb, 2, &format!("tcp-send {addr}"));
        sender.expect("sent", Duration::from_secs(10));
        // The connection is queued already, so accept returns at once.
        let (mut conn, from) = listener.accept().unwrap();
        assert_eq!(from.ip(), std::net::IpAddr::V4(tb.host_addr(2)));
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert_eq!(got, format!("hello from {}", tb.host_addr(2)));
        sender.wait_ok(Duration::from_secs(10));
        tb.teardown().unwrap();
        eprintln!(
            "{}: host 2 -> listener of the test process ok",
            mode.as_str()
        );
    }
}

#[test]
fn drop_removes_everything_even_with_a_process_inside() {
    for mode in modes() {
        let (prefix, inner_pid, guard) = {
            let tb = Testbed::create_with(3, mode).unwrap();
            let inner = role_in(&tb, 1, "echo");
            inner.expect("ready", Duration::from_secs(10));
            let ids = (
                tb.prefix().to_string(),
                inner.child.id(),
                tb.guard_pid().unwrap(),
            );
            std::mem::forget(inner); // still running when the testbed goes
            if mode == Mode::Root {
                assert_eq!(leftovers(&ids.0).len(), 4, "3 hosts + switch listed");
            }
            ids
        }; // Drop
        assert_eq!(leftovers(&prefix), Vec::<String>::new());
        // Teardown waited for the guard, and the guard killed the process before it exited.
        assert!(gone(guard), "guard {guard} still running");
        wait_exit(inner_pid, Duration::from_secs(5), "process inside");
    }
}

#[test]
fn creator_ended_by_sigint_sigterm_sigkill_or_panic_leaves_nothing() {
    for mode in modes() {
        // None: the holder panics (unwinding runs Drop) instead of being killed.
        for signal in [
            Some(libc::SIGINT),
            Some(libc::SIGTERM),
            Some(libc::SIGKILL),
            None,
        ] {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args(["--exact", "role_entry", "--nocapture", "--test-threads=1"])
                .env(
                    ROLE_ENV,
                    format!(
                        "hold {}",
                        if mode == Mode::Root { "root" } else { "userns" }
                    ),
                );
            let mut holder = Proc::spawn(cmd, "holder");
            let l = holder.expect("prefix ", Duration::from_secs(20));
            let f: Vec<&str> = l.split_whitespace().collect();
            let (prefix, inner, guard): (&str, u32, u32) =
                (f[1], f[3].parse().unwrap(), f[5].parse().unwrap());
            if mode == Mode::Root {
                assert_eq!(leftovers(prefix).len(), 3, "2 hosts + switch while alive");
            }
            assert!(!gone(inner));
            match signal {
                // SAFETY: plain kill(2) of our own child.
                Some(sig) => assert_eq!(unsafe { libc::kill(holder.child.id() as i32, sig) }, 0),
                None => {
                    use std::io::Write;
                    let stdin = holder.child.stdin.as_mut().unwrap();
                    stdin.write_all(b"panic\n").unwrap();
                }
            }
            let st = holder.child.wait().unwrap();
            assert!(!st.success());
            // The guard deletes the namespaces, then exits: wait for that event, then look.
            wait_exit(guard, Duration::from_secs(10), "guard");
            assert_eq!(leftovers(prefix), Vec::<String>::new());
            wait_exit(inner, Duration::from_secs(5), "process inside");
            eprintln!(
                "{}: creator ended by {signal:?} (None = panic): clean",
                mode.as_str()
            );
        }
    }
}

#[test]
fn create_removes_namespaces_of_dead_creators() {
    if support_of(Mode::Root).is_err() {
        eprintln!("SKIPPED: stale-namespace collection is a root-mode feature");
        return;
    }
    // A pid that surely is dead: a child we started and reaped.
    let mut c = Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    let stale = format!("mpc-{dead}-0badf00d-h0");
    let ip = mpcomm::netns::find_tool("ip").unwrap();
    let st = Command::new(&ip)
        .args(["netns", "add", &stale])
        .status()
        .unwrap();
    assert!(st.success());
    struct Del(String, std::path::PathBuf);
    impl Drop for Del {
        fn drop(&mut self) {
            // Normally already gone (that is the point of the test).
            let _ = Command::new(&self.1)
                .args(["netns", "del", &self.0])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _guard = Del(stale.clone(), ip);
    let tb = Testbed::create_with(1, Mode::Root).unwrap();
    assert_eq!(
        leftovers(&stale),
        Vec::<String>::new(),
        "stale namespace kept"
    );
    tb.teardown().unwrap();
}
