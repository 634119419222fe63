//! The original's prompt in `mpcomm c2 serve` when stdin is a terminal: `script` gives the
//! controller a pseudo-terminal fed from a pipe. Skipped, saying why, without `script`.

mod c2_common;

use std::process::Command;
use std::time::Duration;

use c2_common::{write_key, TempDir, EXE};

#[test]
fn prompt_status_bounds_and_exit() {
    let Some(script) = mpcomm::netns::find_tool("script") else {
        eprintln!(
            "SKIPPED: `script` (util-linux) not found; it provides the terminal for this test"
        );
        return;
    };
    let dir = TempDir::new("c2-prompt");
    let key = write_key(&dir, "key");
    let serve = format!(
        "{EXE} c2 serve --listen 127.0.0.1:0 --compare-listen 127.0.0.1:0 --key-file {}",
        key.display()
    );
    // `script -c` takes one command string; every part of it is ours (paths from this test).
    let mut cmd = Command::new(script);
    cmd.args(["-q", "-f", "-e", "-c", &serve, "/dev/null"]);
    let input = dir.path("input");
    std::fs::write(&input, "status\nrun 9 10\nfly away\nexit\n").unwrap();
    cmd.stdin(std::fs::File::open(&input).unwrap());
    let (status, out, err) = run_to_end_with_stdin(cmd, Duration::from_secs(30));
    let all = format!("{out}{err}");
    assert!(status.success(), "{all}");
    assert!(all.contains(">>> "), "{all}");
    assert!(all.contains("0 live agents (0 known)"), "{all}");
    assert!(
        all.contains("refused: 9 peers requested but only 0 agents are live"),
        "{all}"
    );
    assert!(
        all.contains("commands: run N N_MSGS [fanout|multicast] [ORDER], status, exit"),
        "{all}"
    );
    assert!(all.contains("0 agents stopped"), "{all}");
}

/// Run to the end within `within`, keeping the caller's stdin; (status, stdout, stderr).
fn run_to_end_with_stdin(
    cmd: Command,
    within: Duration,
) -> (std::process::ExitStatus, String, String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut cmd = cmd;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn script");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let out = match rx.recv_timeout(within) {
        Ok(s) => s,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the prompt session did not end within {within:?}");
        }
    };
    let status = child.wait().unwrap();
    (status, out, t_err.join().unwrap())
}
