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
//!
//! With [`Group::with_notify`] the children are told a socket (`peer --notify`), and what they
//! send there (`wire::child`: Ready, Outcome) comes into the same channel as their exits, from
//! one more thread that reads the socket: [`Group::wait_ready`] waits on both.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use crate::peer::child::{ParentSocket, RECV_BUF};
use crate::wire::child::Repr as Told;

/// Pids of every live child of this process, for the signal handler.
pub type PidList = Arc<Mutex<Vec<u32>>>;

pub struct Group {
    pids: PidList,
    /// `None` once reaped.
    children: Vec<Option<Child>>,
    events: Receiver<Event>,
    tx: mpsc::Sender<Event>,
    stderr: Vec<Arc<Mutex<Vec<String>>>>,
    /// Exits seen while waiting for readiness, not yet reaped by [`Group::next_exit`].
    exited: VecDeque<usize>,
    notify: Option<ParentSocket>,
    /// Per child (by peer id): reported Ready; its Outcome.
    ready: Vec<bool>,
    outcomes: Vec<Option<Told>>,
}

enum Event {
    Exited(usize),
    Told(Told),
}

/// What [`Group::wait_ready`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Every child said Ready.
    All,
    /// A child exited first (its exit is still there for [`Group::next_exit`]).
    Exited(usize),
    /// The deadline passed, or the group has no socket to hear on.
    NotHeard,
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
        let (tx, events) = mpsc::channel();
        Group {
            pids,
            children: Vec::new(),
            events,
            tx,
            stderr: Vec::new(),
            exited: VecDeque::new(),
            notify: None,
            ready: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    /// A group whose children report to a socket `name` in `dir` (private to this process:
    /// whoever can write there can speak for a child). Pass [`Group::notify_path`] to them.
    pub fn with_notify(pids: PidList, dir: &Path, name: &str) -> std::io::Result<Group> {
        let mut group = Group::new(pids);
        let socket = ParentSocket::bind(dir, name)?;
        let reader = socket.try_clone()?;
        let tx = group.tx.clone();
        std::thread::Builder::new()
            .name("peer-notify".into())
            .stack_size(WATCHER_STACK)
            .spawn(move || {
                let mut buf = [0u8; RECV_BUF];
                // An empty datagram is the group's own wake-up on drop.
                while let Ok(n @ 1..) = reader.recv(&mut buf) {
                    // Not ours, or garbled: a child it was meant for is judged by its exit.
                    if let Ok(told) = Told::parse(&buf[..n]) {
                        if tx.send(Event::Told(told)).is_err() {
                            break;
                        }
                    }
                }
            })?;
        group.notify = Some(socket);
        Ok(group)
    }

    /// The socket the children tell (`peer --notify PATH`), with [`Group::with_notify`].
    pub fn notify_path(&self) -> Option<&Path> {
        self.notify.as_ref().map(ParentSocket::path)
    }

    /// Child `index`'s Outcome, if it sent one.
    pub fn outcome(&self, index: usize) -> Option<&Told> {
        self.outcomes.get(index).and_then(Option::as_ref)
    }

    /// Wait until every child has said Ready, one has exited, or `deadline`.
    pub fn wait_ready(&mut self, deadline: Instant) -> Readiness {
        if self.notify.is_none() {
            return Readiness::NotHeard;
        }
        loop {
            if self.ready.iter().all(|&r| r) {
                return Readiness::All;
            }
            if let Some(&index) = self.exited.front() {
                return Readiness::Exited(index);
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(event) => self.note(event),
                Err(_) => return Readiness::NotHeard,
            }
        }
    }

    /// Keep what a child told; queue an exit for [`Group::next_exit`].
    fn note(&mut self, event: Event) {
        match event {
            Event::Exited(index) => self.exited.push_back(index),
            Event::Told(told) => {
                let (peer, is_ready) = match &told {
                    Told::Ready { peer, .. } => (usize::from(*peer), true),
                    Told::Outcome { peer, .. } => (usize::from(*peer), false),
                };
                if peer >= self.children.len() {
                    return; // no such child: not one of ours
                }
                if is_ready {
                    self.ready[peer] = true;
                } else {
                    self.outcomes[peer] = Some(told);
                }
            }
        }
    }

    /// Close every child's stdin: a child waiting on it (`peer --start-gate`) goes now.
    pub fn release(&mut self) {
        for child in self.children.iter_mut().flatten() {
            drop(child.stdin.take());
        }
    }

    /// Start every command at once, child i from a thread of its own (see the module doc); the
    /// children get indices `len()..len() + cmds.len()` in order. Their stdin is a pipe, kept
    /// open until [`Group::release`]: a child that waits for it (`peer --start-gate`) goes
    /// when all go. Returns once all started, or with the first error (the ones that did
    /// start stay in the group, so dropping it stops them).
    pub fn spawn_all(&mut self, cmds: Vec<Command>, echo: bool) -> std::io::Result<()> {
        let first = self.children.len();
        let n = cmds.len();
        let (started_tx, started) = mpsc::channel::<(usize, std::io::Result<Child>)>();
        for (k, cmd) in cmds.into_iter().enumerate() {
            let index = first + k;
            self.children.push(None);
            self.ready.push(false);
            self.outcomes.push(None);
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
        error.map_or(Ok(()), Err)
    }

    /// The next child to exit (reaped), or `None` at the deadline.
    pub fn next_exit(&mut self, deadline: Instant) -> Option<Exit> {
        let index = loop {
            if let Some(index) = self.exited.pop_front() {
                break index;
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(event) => self.note(event),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        };
        let mut child = self.children[index].take().expect("each child exits once");
        let pid = child.id();
        // Off the list first, under its lock: the handler never signals a reaped pid.
        self.pids.lock().expect("pid list").retain(|&p| p != pid);
        Some(Exit {
            index,
            status: child.wait(),
        })
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
    exited: &mpsc::Sender<Event>,
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
    let _ = exited.send(Event::Exited(index));
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill_all();
        if let Some(socket) = &self.notify {
            let _ = socket.wake(); // the reader thread ends
        }
    }
}
