//! Peer child processes: started with an argument vector (no shell), their stderr kept for the
//! error message, and killed and reaped when the group is dropped — on success, failure, panic
//! or Ctrl-C — or by the kernel when the lab itself dies (SIGKILL included).
//!
//! One thread per child starts it, reads its stderr and then *waits without reaping* (`waitid`
//! with `WNOWAIT`): until this thread's owner reaps it, the exited child stays a zombie and its
//! pid cannot be reused, so a SIGTERM from `kill_all` or the signal handler can never hit an
//! unrelated process. Only [`Group::next_exit`] reaps, after taking the pid off the shared list.
//!
//! That thread also *spawns* the child, so [`Group::spawn_all`] starts N children in parallel:
//! `Command::spawn` returns only once the child has exec'd, and with 256 peers on two busy
//! cores, one after the other, that took 19 ms each (5 s in all). It must be that thread: the
//! kernel sends `PR_SET_PDEATHSIG` when the *thread* that forked the child exits, and this one
//! outlives its child.

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

    /// Start every command at once, child i from a thread of its own (see the module doc); the
    /// children get indices `len()..len() + cmds.len()` in order. Their stdin is a pipe, closed
    /// once every one has started: a child that waits for it (`peer --start-gate`) goes when
    /// all go. Returns then, or with the first error (the ones that did start stay in the
    /// group, so dropping it stops them).
    pub fn spawn_all(&mut self, cmds: Vec<Command>, echo: bool) -> std::io::Result<()> {
        let first = self.children.len();
        let n = cmds.len();
        let (started_tx, started) = mpsc::channel::<(usize, std::io::Result<Child>)>();
        for (k, cmd) in cmds.into_iter().enumerate() {
            let index = first + k;
            self.children.push(None);
            let lines = Arc::new(Mutex::new(Vec::new()));
            self.stderr.push(lines.clone());
            let (pids, exited, tx) = (self.pids.clone(), self.tx.clone(), started_tx.clone());
            let watcher = std::thread::Builder::new()
                .name(format!("peer-{index}"))
                .stack_size(WATCHER_STACK)
                .spawn(move || watch(cmd, index, echo, &pids, lines, &tx, &exited));
            if let Err(e) = watcher {
                // No thread, no child: what was started so far is reaped below and on drop.
                let _ = started_tx.send((index, Err(e)));
            }
        }
        drop(started_tx);
        let mut error = None;
        for _ in 0..n {
            let Ok((index, result)) = started.recv() else {
                break; // every watcher reported or died; a missing child is simply not there
            };
            match result {
                Ok(child) => self.children[index] = Some(child),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        // Release them together: a peer with --start-gate begins its handshake now. (On an
        // error too: stopping a child blocked on its gate works either way.)
        for child in self.children[first..].iter_mut().flatten() {
            drop(child.stdin.take());
        }
        error.map_or(Ok(()), Err)
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

/// Stack of a child's thread: it only spawns, reads lines and waits.
const WATCHER_STACK: usize = 256 << 10;

/// The life of one child, on its own thread: start it, hand the [`Child`] to the group, keep the
/// last lines of its stderr, and on exit wait for it without reaping, then say so.
fn watch(
    mut cmd: Command,
    index: usize,
    echo: bool,
    pids: &PidList,
    lines: Arc<Mutex<Vec<String>>>,
    started: &mpsc::Sender<(usize, std::io::Result<Child>)>,
    exited: &mpsc::Sender<usize>,
) {
    // The gate: closed by spawn_all once every child has started.
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.env_remove("NOTIFY_SOCKET");
    // A lab killed with SIGKILL leaves no peer running: the child dies with this thread, which
    // lives until the child has exited.
    crate::util::supervise::die_with_parent(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = started.send((index, Err(e)));
            return;
        }
    };
    let pid = child.id();
    // On the list before the group has it: the signal handler may stop it from now on.
    pids.lock().expect("pid list").push(pid);
    let err = child.stderr.take().expect("piped");
    if started.send((index, Ok(child))).is_err() {
        // The group is gone (a panic): nobody will reap this child, so stop it and do.
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
        return;
    }
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
    let _ = exited.send(index);
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill_all();
    }
}
