//! The README's "Try it on one machine" block, run verbatim: taken out of README.md at test
//! time (so the two cannot drift), run by `sh` in a temp dir with the built `mpcomm` first on
//! PATH, in a process group of its own. It must end within the deadline with 4 runs reported
//! (`--repeat 2 --transport both`), remove the uploaded delivery logs, and leave no process of
//! that group behind; whatever happens, the whole group is killed at the end.
//!
//! The block uses the README's fixed ports (127.0.0.1:4569 and :4568, UDP 4567 on
//! 127.0.0.2–5), so it cannot run twice at once; no other test uses them.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_mpcomm");
const DEADLINE: Duration = Duration::from_secs(120);

/// The first ```sh block after the heading `### Try it on one machine`.
fn readme_block() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let from = readme
        .find("### Try it on one machine")
        .expect("the README has a \"Try it on one machine\" section");
    let rest = &readme[from..];
    let start = rest.find("```sh\n").expect("an sh block in that section") + "```sh\n".len();
    let len = rest[start..].find("\n```").expect("the block ends");
    rest[start..start + len + 1].to_string()
}

/// Processes (not zombies) whose process group is `pgid`, with their command lines.
fn group_members(pgid: i32) -> Vec<(i32, String)> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ')'.
        let Some((_, after)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2].parse::<i32>().ok() == Some(pgid) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            v.push((pid, cmd));
        }
    }
    v
}

/// Kills the whole process group when dropped: on success it is already empty.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a negative pid signals the group we created; no memory involved.
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_readme_c2_block_runs_verbatim_and_leaves_nothing_behind() {
    let block = readme_block();
    assert!(
        block.contains("mpcomm c2 exit"),
        "not the C2 block:\n{block}"
    );
    let dir = TempDir(std::env::temp_dir().join(format!(
        "mpcomm-c2-readme-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let bin = Path::new(EXE).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = dir.0.join("stdout");
    let err = dir.0.join("stderr");
    let started = Instant::now();
    // Output to files, not pipes: background jobs would hold a pipe open.
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(&block)
        .current_dir(&dir.0)
        .env("PATH", path)
        .env_remove("MPCOMM_CONTROLLER")
        .env_remove("MPCOMM_KEY_FILE")
        .env_remove("STATE_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    let group = Group(sh.id() as i32);
    let status = loop {
        if let Some(s) = sh.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > DEADLINE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let show = || format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let Some(status) = status else {
        let left = group_members(group.0);
        panic!(
            "the block did not end within {DEADLINE:?}; still running: {left:?}\n{}",
            show()
        );
    };
    // `wait` at the end of the block: nothing of the group should be left; give the kernel a
    // moment to finish exits already under way.
    let mut left = group_members(group.0);
    let gone_by = Instant::now() + Duration::from_secs(3);
    while !left.is_empty() && Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(20));
        left = group_members(group.0);
    }
    assert!(
        left.is_empty(),
        "processes left behind: {left:?}\n{}",
        show()
    );
    assert!(status.success(), "sh exit {status}\n{}", show());
    let runs: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with('[') && l.contains("] run ") && l.contains(" lost"))
        .collect();
    assert_eq!(runs.len(), 4, "4 runs reported\n{}", show());
    for k in 1..=4 {
        assert!(
            runs.iter().any(|l| l.starts_with(&format!("[{k}/4] run "))),
            "run {k}/4\n{}",
            show()
        );
    }
    assert!(
        stdout.contains("controller stopped; 4 agents stopped"),
        "{}",
        show()
    );
    // Every log was uploaded, so no agent kept one; each kept its identity.
    for i in 1..=4 {
        let d = dir.0.join(format!("agent{i}"));
        let names: Vec<String> = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.ends_with(".mplog")),
            "agent{i} kept {names:?}"
        );
        assert!(names.iter().any(|n| n == "agent-instance"), "{names:?}");
    }
    // One write per line: every agent line is whole (no line holds two agents' prefixes).
    for l in stderr.lines() {
        assert!(
            l.matches("mpcomm c2 agent: ").count() <= 1,
            "lines mixed mid-line: {l:?}"
        );
    }
    eprintln!("MEASURED: the README's C2 block (4 runs, exit, wait) took {took:.2?}");
}
