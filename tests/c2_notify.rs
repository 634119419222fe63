//! systemd readiness without systemd: a test-owned notify socket (a path, and an abstract `@`
//! name) receives READY=1 from the controller once it listens and from the agent once it is
//! registered, and STOPPING=1 when `c2 exit` stops them. Also: a key file readable by others
//! is refused before anything starts.

mod c2_common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::Command;
use std::time::Duration;

use c2_common::{run_to_end, start_controller_env, write_key, Hosts, Proc, TempDir, EXE};

struct Plain;

impl Hosts for Plain {
    fn command(&self, _host: usize) -> Command {
        Command::new(EXE)
    }
    fn controller_listen(&self) -> std::net::SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }
    fn controller_extra(&self) -> Vec<String> {
        Vec::new()
    }
    fn agent_extra(&self, _host: usize) -> Vec<String> {
        Vec::new()
    }
    fn raw_probe(&self) -> bool {
        false
    }
}

fn recv_state(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the read timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_and_stopping_reach_path_and_abstract_notify_sockets() {
    let dir = TempDir::new("c2-notify");
    let key = write_key(&dir, "key");

    let path = dir.path("notify.sock");
    let ctl_sock = UnixDatagram::bind(&path).unwrap();
    ctl_sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let name = format!(
        "mpcomm-test-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let agent_sock =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    agent_sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let (mut serve, ctl) = start_controller_env(
        &Plain,
        &key,
        "127.0.0.1:0".parse().unwrap(),
        &dir.path("results.jsonl"),
        &[("NOTIFY_SOCKET", path.as_os_str())],
    );
    assert_eq!(recv_state(&ctl_sock), "READY=1");

    let mut cmd = Command::new(EXE);
    cmd.args([
        "c2",
        "agent",
        "--controller",
        &ctl.to_string(),
        "--advertise",
        "127.0.0.1",
    ]);
    cmd.arg("--key-file")
        .arg(&key)
        .arg("--log-dir")
        .arg(dir.path("logs"));
    cmd.env("NOTIFY_SOCKET", format!("@{name}"));
    let mut agent = Proc::spawn(cmd, "agent");
    assert_eq!(recv_state(&agent_sock), "READY=1");
    // READY=1 is sent only after registration, so the line is already there.
    agent.wait_for("registered with controller", Duration::from_secs(1));

    let mut ex = Command::new(EXE);
    ex.args(["c2", "exit", "--controller", &ctl.to_string()])
        .arg("--key-file")
        .arg(&key);
    let (status, _, _) = run_to_end(ex, Duration::from_secs(30));
    assert!(status.success());
    assert_eq!(recv_state(&agent_sock), "STOPPING=1");
    assert_eq!(recv_state(&ctl_sock), "STOPPING=1");
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
    assert!(serve.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn key_file_readable_by_others_is_refused_and_nothing_starts() {
    let dir = TempDir::new("c2-key");
    let key = write_key(&dir, "key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        &["serve", "--listen", "127.0.0.1:0", "--no-prompt"][..],
        &["agent", "--controller", "127.0.0.1:9"][..],
    ] {
        let mut cmd = Command::new(EXE);
        cmd.arg("c2").args(args).arg("--key-file").arg(&key);
        let (status, _, err) = run_to_end(cmd, Duration::from_secs(10));
        assert!(!status.success(), "{args:?}");
        assert!(
            err.contains("readable by group or others") && err.contains("chmod 600"),
            "{err}"
        );
    }
}
