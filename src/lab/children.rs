//! Peer child processes: started with an argument vector (no shell), their stderr kept for the
//! error message, and killed and reaped when the group is dropped — on success, failure, panic
//! or Ctrl-C — or by the kernel when the lab itself dies (SIGKILL included).
//!
//! One thread per child reads its stderr and then *waits without reaping* (`waitid` with
//! `WNOWAIT`): until this thread's owner reaps it, the exited child stays a zombie and its pid
//! cannot be reused, so a SIGTERM from `kill_all` or the signal handler can never hit an
//! unrelated process. Only [`Group::next_exit`] reaps, after taking the pid off the shared list.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

/// Pids of every live child of this process, for the signal handler.
pub type PidList = Arc<Mutex<Vec<u32>>>;

pub struct Group {
    pids: PidList,
    /// `None` once reaped.
    children: Vec<Option<Child>>,
    exited: Receiver<usize>,
    tx: mpsc::Sender<usize>,
    stderr: Vec<Arc<Mutex<Vec<String>>>>,
}

/// How a child ended.
#[derive(Debug)]
pub struct Exit {
    pub index: usize,
    pub status: std::io::Result<ExitStatus>,
}

/// Keep at most this many stderr lines per child (the last ones matter).
const STDERR_LINES: usize = 50;

impl Group {
    pub fn new(pids: PidList) -> Group {
        let (tx, exited) = mpsc::channel();
        Group {
            pids,
            children: Vec::new(),
            exited,
            tx,
            stderr: Vec::new(),
        }
    }

    /// Start `cmd`; returns its index in the group.
    pub fn spawn(&mut self, mut cmd: Command, echo: bool) -> std::io::Result<usize> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.env_remove("NOTIFY_SOCKET");
        // A lab killed with SIGKILL leaves no peer running.
        crate::util::supervise::die_with_parent(&mut cmd);
        let mut child: Child = cmd.spawn()?;
        let index = self.children.len();
        let pid = child.id();
        self.pids.lock().expect("pid list").push(pid);
        let lines = Arc::new(Mutex::new(Vec::new()));
        self.stderr.push(lines.clone());
        let err = child.stderr.take().expect("piped");
        self.children.push(Some(child));
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if echo {
                    say!("  [peer {index}] {line}");
                }
                let mut l = lines.lock().expect("stderr lines");
                if l.len() == STDERR_LINES {
                    l.remove(0);
                }
                l.push(line);
            }
            // stderr closed: the child is exiting. Wait for it, but leave it to be reaped.
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            let _ = waitid(Id::Pid(Pid::from_raw(pid as i32)), flags);
            let _ = tx.send(index);
        });
        Ok(index)
    }

    /// The next child to exit (reaped), or `None` at the deadline.
    pub fn next_exit(&mut self, deadline: Instant) -> Option<Exit> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.exited.recv_timeout(wait) {
            Ok(index) => {
                let mut child = self.children[index].take().expect("each child exits once");
                let pid = child.id();
                // Off the list first, under its lock: the handler never signals a reaped pid.
                self.pids.lock().expect("pid list").retain(|&p| p != pid);
                Some(Exit {
                    index,
                    status: child.wait(),
                })
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The last lines child `index` wrote to stderr.
    pub fn stderr_of(&self, index: usize) -> Vec<String> {
        self.stderr[index].lock().expect("stderr lines").clone()
    }

    fn live(&self) -> Vec<u32> {
        self.children.iter().flatten().map(Child::id).collect()
    }

    /// Terminate every child still running, and wait (bounded) for them to exit.
    pub fn kill_all(&mut self) {
        for pid in self.live() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.live().is_empty() && self.next_exit(deadline).is_some() {}
        for pid in self.live() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.live().is_empty() && self.next_exit(deadline).is_some() {}
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill_all();
    }
}
