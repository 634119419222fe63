//! Peer child processes: started with an argument vector (no shell), watched by one thread each
//! (blocked in `wait`, not polling), their stderr kept for the error message, and killed and
//! reaped when the group is dropped — on success, failure, panic or Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Pids of every live child of this process, for the signal handler.
pub type PidList = Arc<Mutex<Vec<u32>>>;

pub struct Group {
    pids: PidList,
    mine: Vec<u32>,
    exits: Receiver<(usize, std::io::Result<ExitStatus>)>,
    stderr: Vec<Arc<Mutex<Vec<String>>>>,
    tx: mpsc::Sender<(usize, std::io::Result<ExitStatus>)>,
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
        let (tx, exits) = mpsc::channel();
        Group {
            pids,
            mine: Vec::new(),
            exits,
            stderr: Vec::new(),
            tx,
        }
    }

    /// Start `cmd`; returns its index in the group.
    pub fn spawn(&mut self, mut cmd: Command, echo: bool) -> std::io::Result<usize> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.env_remove("NOTIFY_SOCKET");
        let mut child: Child = cmd.spawn()?;
        let index = self.stderr.len();
        let pid = child.id();
        self.pids.lock().expect("pid list").push(pid);
        self.mine.push(pid);
        let lines = Arc::new(Mutex::new(Vec::new()));
        self.stderr.push(lines.clone());
        let err = child.stderr.take().expect("piped");
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("  [peer {index}] {line}");
                }
                let mut l = lines.lock().expect("stderr lines");
                if l.len() == STDERR_LINES {
                    l.remove(0);
                }
                l.push(line);
            }
            // stderr closed: the child is exiting; reap it.
            let _ = tx.send((index, child.wait()));
        });
        Ok(index)
    }

    /// The next child to exit, or `None` at the deadline.
    pub fn next_exit(&mut self, deadline: Instant) -> Option<Exit> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.exits.recv_timeout(wait) {
            Ok((index, status)) => {
                let pid = self.mine[index];
                self.pids.lock().expect("pid list").retain(|&p| p != pid);
                self.mine[index] = 0;
                Some(Exit { index, status })
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The last lines child `index` wrote to stderr.
    pub fn stderr_of(&self, index: usize) -> Vec<String> {
        self.stderr[index].lock().expect("stderr lines").clone()
    }

    /// Terminate every child still running, and wait (bounded) for them to exit.
    pub fn kill_all(&mut self) {
        let live: Vec<usize> = (0..self.mine.len())
            .filter(|&i| self.mine[i] != 0)
            .collect();
        for &i in &live {
            let _ = kill(Pid::from_raw(self.mine[i] as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut left = live.len();
        while left > 0 {
            match self.next_exit(deadline) {
                Some(_) => left -= 1,
                None => break,
            }
        }
        for i in 0..self.mine.len() {
            if self.mine[i] != 0 {
                let _ = kill(Pid::from_raw(self.mine[i] as i32), Signal::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.mine.iter().any(|&p| p != 0) && self.next_exit(deadline).is_some() {}
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill_all();
    }
}
