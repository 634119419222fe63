//! The controller waits out an exit's grace period asleep: it wakes on deadlines and events,
//! never polls with a zero timeout. Before the core took the timers, the requester's skipped
//! heartbeat left a deadline in the past and the loop spun (about 1 s of CPU per 3 s exit).

mod c2_common;

use std::process::Command;
use std::time::{Duration, Instant};

use c2_common::{listening_addr, write_key, Proc, RawControl, TempDir, EXE};
use mpcomm::c2::proto::Msg;

/// User + system CPU time of a process (alive, or a zombie not reaped yet).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[test]
fn the_controller_sleeps_through_an_exit() {
    let dir = TempDir::new("c2-exit-idle");
    let key = write_key(&dir, "key");
    let mut cmd = Command::new(EXE);
    cmd.args(["c2", "serve", "--no-prompt", "--listen", "127.0.0.1:0"])
        .args(["--compare-listen", "127.0.0.1:0"])
        .arg("--key-file")
        .arg(&key)
        .arg("--results")
        .arg(dir.path("results.jsonl"));
    let mut serve = Proc::spawn(cmd, "serve");
    let addr = listening_addr(&mut serve);
    let pid = serve.child.id();
    let before = cpu_time(pid);
    let asked = Instant::now();
    let mut control = RawControl::connect(addr, &key);
    let exit = control.seal(&Msg::ExitRequest);
    control.send_payload(&exit);
    assert_eq!(control.recv(), Some(Msg::ExitDone { agents: 0 }));
    let waited = asked.elapsed();
    let used = cpu_time(pid).saturating_sub(before);
    assert!(
        waited >= mpcomm::c2::exit::EXIT_GRACE,
        "ExitDone after the grace period, not before: {waited:?}"
    );
    // A spinning loop burns a large share of a core over 3 s even on a loaded machine; a
    // sleeping one a few milliseconds.
    assert!(
        used < Duration::from_millis(250),
        "the controller used {used:?} of CPU while waiting {waited:?}"
    );
    assert!(serve.wait_exit(Duration::from_secs(5)).success());
    eprintln!("MEASURED: controller CPU over a {waited:?} exit: {used:?}");
}
