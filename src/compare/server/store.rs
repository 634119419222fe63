//! The comparator's runs as a plain state machine: logs in, refusals and complete runs out,
//! time passed in. No sockets, no clock, no threads: the driver calls
//!
//! * [`RunStore::offer`] for every upload that decoded (→ stored, complete, or a typed refusal),
//! * [`RunStore::poll_due`] after every wake-up (→ runs whose timeout passed),
//! * [`RunStore::finish`] when the worker is done with a run it was handed,
//!
//! and sleeps until [`RunStore::next_deadline`]. A run is *incomplete* (collecting logs),
//! then *reporting* (with the worker), then *reported* (remembered, to refuse late uploads).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::compare::peerlog::PeerLog;
use crate::net::{source_key, Deadlines};
use crate::viz::trace::Times;
use crate::wire::frame::{Kind, Reason};

/// Reported run ids remembered (to refuse late uploads); the oldest are forgotten first.
pub const REPORTED_MEMORY: usize = 1 << 16;

/// A refusal: the code decides (the kind follows from it), the text is for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub text: String,
}

impl Refusal {
    pub fn new(reason: Reason, text: String) -> Refusal {
        Refusal { reason, text }
    }

    /// `Busy` for a refusal the client should retry, `Rejected` for a final one.
    pub fn kind(&self) -> Kind {
        if self.reason.is_transient() {
            Kind::Busy
        } else {
            Kind::Rejected
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct StoreLimits {
    /// A run is reported this long after its first upload even with logs missing.
    pub run_timeout: Duration,
    /// Largest N a log may claim.
    pub max_peers: u16,
    /// Incomplete runs whose first log came from one source ([`source_key`]).
    pub max_runs_per_source: usize,
}

/// One run's logs.
#[derive(Debug)]
pub struct Run {
    pub logs: Vec<PeerLog>,
    /// With an html directory: what the page draws of each log, in the order of `logs`.
    pub times: Vec<Times>,
    have: Vec<bool>,
    pub peers: u16,
    pub msgs: u32,
    /// Source of the first upload.
    source: IpAddr,
    /// Heap bytes of `logs` and `times`.
    pub bytes: usize,
}

impl Run {
    pub fn logs_in(&self) -> usize {
        self.logs.len()
    }

    /// Take out the log of `peer` (so its upload can be sent again); returns its bytes.
    fn forget(&mut self, peer: u16) -> usize {
        let mut size = 0;
        if let Some(i) = self.logs.iter().position(|l| l.header.peer_id == peer) {
            size += self.logs.swap_remove(i).heap_bytes();
            if i < self.times.len() {
                size += self.times.swap_remove(i).heap_bytes();
            }
        }
        if let Some(h) = self.have.get_mut(usize::from(peer)) {
            *h = false;
        }
        self.bytes -= size;
        size
    }
}

/// An upload the store took.
#[derive(Debug)]
pub enum Offer {
    /// Stored; the run has `have` of `of` logs.
    Stored { have: usize, of: u16 },
    /// Stored, and it completed run `id`: hand `run` to the worker.
    Complete { id: u64, run: Run },
}

/// What the worker made of a run.
#[derive(Debug)]
pub enum Finished {
    /// Analysed and on disk.
    Reported,
    /// The analysis failed (a bug); the run is forgotten like a reported one.
    Broken,
    /// The results line could not be written: the run comes back, without the log of
    /// `refused_peer` (whose upload is told to send it again), for another timeout.
    NotWritten { run: Run, refused_peer: Option<u16> },
}

pub struct RunStore {
    limits: StoreLimits,
    runs: HashMap<u64, Run>,
    deadlines: Deadlines<u64>,
    /// Incomplete runs per source of their first log.
    per_source: HashMap<IpAddr, usize>,
    /// Runs with the worker, and their bytes.
    reporting: HashMap<u64, usize>,
    reported: HashSet<u64>,
    reported_order: VecDeque<u64>,
    /// Heap bytes of the logs of incomplete and reporting runs.
    stored_bytes: usize,
}

impl RunStore {
    pub fn new(limits: StoreLimits) -> RunStore {
        RunStore {
            limits,
            runs: HashMap::new(),
            deadlines: Deadlines::new(),
            per_source: HashMap::new(),
            reporting: HashMap::new(),
            reported: HashSet::new(),
            reported_order: VecDeque::new(),
            stored_bytes: 0,
        }
    }

    pub fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }

    pub fn incomplete(&self) -> usize {
        self.runs.len()
    }

    /// Incomplete runs: (id, logs in, peers).
    pub fn incomplete_runs(&self) -> impl Iterator<Item = (u64, usize, u16)> + '_ {
        self.runs.iter().map(|(id, r)| (*id, r.logs_in(), r.peers))
    }

    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.deadlines.earliest()
    }

    /// Store one decoded log from `source` (its heap cost with `times` is `log.heap_bytes()`
    /// plus theirs; the caller checked the memory budget).
    pub fn offer(
        &mut self,
        log: PeerLog,
        times: Option<Times>,
        source: IpAddr,
        now: Instant,
    ) -> Result<Offer, Refusal> {
        let h = &log.header;
        let (id, peer, n, m) = (h.run_id, h.peer_id, h.peers, h.msgs);
        if n > self.limits.max_peers {
            return Err(Refusal::new(
                Reason::TooManyPeers,
                format!(
                    "log of peer {peer} says {n} peers; this comparator takes at most {} (--max-peers)",
                    self.limits.max_peers
                ),
            ));
        }
        if peer >= n {
            return Err(Refusal::new(
                Reason::BadLog,
                format!("bad log: peer {peer} of a run of {n} peers"),
            ));
        }
        if self.reported.contains(&id) {
            return Err(Refusal::new(
                Reason::AlreadyReported,
                format!("run {id:016x} was already reported; a new run needs a new run id"),
            ));
        }
        if self.reporting.contains_key(&id) {
            return Err(Refusal::new(
                Reason::BeingReported,
                format!("run {id:016x} is being reported (its run timeout passed or all its logs are in); a new run needs a new run id"),
            ));
        }
        let source = source_key(source);
        if !self.runs.contains_key(&id) {
            let cap = self.limits.max_runs_per_source;
            let mine = self.per_source.get(&source).copied().unwrap_or(0);
            if mine >= cap {
                return Err(Refusal::new(
                    Reason::TooManyRuns,
                    format!("{source} already started {mine} incomplete runs (at most {cap}); wait until they complete or time out"),
                ));
            }
            self.runs.insert(
                id,
                Run {
                    logs: Vec::new(),
                    times: Vec::new(),
                    have: vec![false; usize::from(n)],
                    peers: n,
                    msgs: m,
                    source,
                    bytes: 0,
                },
            );
            *self.per_source.entry(source).or_default() += 1;
            self.deadlines.set(id, now + self.limits.run_timeout);
        }
        let run = self.runs.get_mut(&id).expect("present");
        if (run.peers, run.msgs) != (n, m) {
            return Err(Refusal::new(
                Reason::RunMismatch,
                format!(
                    "log of peer {peer} says {n} peers x {m} msgs, but run {id:016x} has {} x {}",
                    run.peers, run.msgs
                ),
            ));
        }
        if std::mem::replace(&mut run.have[usize::from(peer)], true) {
            return Err(Refusal::new(
                Reason::Duplicate,
                format!("duplicate upload for run {id:016x} peer {peer}: the first one is kept (whoever sent it first)"),
            ));
        }
        let size = log.heap_bytes() + times.as_ref().map_or(0, Times::heap_bytes);
        run.logs.push(log);
        run.times.extend(times);
        run.bytes += size;
        self.stored_bytes += size;
        let have = run.logs.len();
        if have < usize::from(n) {
            return Ok(Offer::Stored { have, of: n });
        }
        let run = self.take(id);
        Ok(Offer::Complete { id, run })
    }

    /// One run whose timeout passed by `now`, now with the worker; `None` when none is due.
    pub fn poll_due(&mut self, now: Instant) -> Option<(u64, Run)> {
        let id = self.deadlines.pop_due(now)?;
        Some((id, self.take(id)))
    }

    /// The worker could not be handed run `id` (it is gone): forget the run.
    pub fn dropped(&mut self, id: u64) {
        if let Some(bytes) = self.reporting.remove(&id) {
            self.stored_bytes -= bytes;
        }
    }

    /// The worker is done with run `id`.
    pub fn finish(&mut self, id: u64, finished: Finished, now: Instant) {
        let Some(bytes) = self.reporting.remove(&id) else {
            return;
        };
        match finished {
            Finished::Reported | Finished::Broken => {
                self.stored_bytes -= bytes;
                self.remember_reported(id);
            }
            Finished::NotWritten {
                mut run,
                refused_peer,
            } => {
                // The rest of the run's bytes stayed counted while it was away.
                if let Some(peer) = refused_peer {
                    self.stored_bytes -= run.forget(peer);
                }
                *self.per_source.entry(run.source).or_default() += 1;
                self.runs.insert(id, run);
                self.deadlines.set(id, now + self.limits.run_timeout);
            }
        }
    }

    /// Move run `id` from incomplete to reporting.
    fn take(&mut self, id: u64) -> Run {
        let run = self.runs.remove(&id).expect("present");
        self.deadlines.remove(id);
        if let Some(n) = self.per_source.get_mut(&run.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&run.source);
            }
        }
        self.reporting.insert(id, run.bytes);
        run
    }

    fn remember_reported(&mut self, id: u64) {
        self.reported.insert(id);
        self.reported_order.push_back(id);
        if self.reported_order.len() > REPORTED_MEMORY {
            if let Some(old) = self.reported_order.pop_front() {
                self.reported.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::log::{encode, LogHeader, Record};

    const LIMITS: StoreLimits = StoreLimits {
        run_timeout: Duration::from_secs(60),
        max_peers: 8,
        max_runs_per_source: 2,
    };

    fn log(run_id: u64, peer_id: u16, peers: u16) -> PeerLog {
        let bytes = encode(
            &LogHeader {
                run_id,
                peer_id,
                peers,
                msgs: 1,
                ..LogHeader::default()
            },
            &[Record {
                sender: 0,
                seq: 0,
                send_ns: 1,
                recv_ns: 2,
                deliver_ns: 3,
                ..Record::default()
            }],
        );
        PeerLog::from_bytes(&bytes).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn refused(r: Result<Offer, Refusal>) -> Reason {
        match r {
            Err(e) => e.reason,
            Ok(o) => panic!("stored: {o:?}"),
        }
    }

    #[test]
    fn a_run_completes_with_its_last_log_and_is_then_refused() {
        let t0 = Instant::now();
        let mut s = RunStore::new(LIMITS);
        let src = ip("192.0.2.1");
        assert!(matches!(
            s.offer(log(1, 0, 2), None, src, t0),
            Ok(Offer::Stored { have: 1, of: 2 })
        ));
        assert!(s.stored_bytes() > 0);
        let dup = s.offer(log(1, 0, 2), None, src, t0);
        assert_eq!(refused(dup), Reason::Duplicate);
        assert_eq!(
            refused(s.offer(log(1, 1, 3), None, src, t0)),
            Reason::RunMismatch
        );
        let Ok(Offer::Complete { id: 1, run }) = s.offer(log(1, 1, 2), None, src, t0) else {
            panic!("not complete");
        };
        assert_eq!(run.logs_in(), 2);
        assert_eq!(s.incomplete(), 0);
        assert_eq!(
            refused(s.offer(log(1, 1, 2), None, src, t0)),
            Reason::BeingReported
        );
        s.finish(1, Finished::Reported, t0);
        assert_eq!(s.stored_bytes(), 0);
        assert_eq!(
            refused(s.offer(log(1, 0, 2), None, src, t0)),
            Reason::AlreadyReported
        );
        // A complete run left no timer behind.
        assert_eq!(s.next_deadline(), None);
        assert!(s.poll_due(t0 + Duration::from_secs(3600)).is_none());
    }

    #[test]
    fn a_run_is_due_at_its_timeout_not_before() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut s = RunStore::new(LIMITS);
        s.offer(log(1, 0, 3), None, ip("192.0.2.1"), t0).unwrap();
        s.offer(log(2, 0, 3), None, ip("192.0.2.2"), at(10))
            .unwrap();
        // A later log does not move the run's timeout.
        s.offer(log(1, 1, 3), None, ip("192.0.2.1"), at(30))
            .unwrap();
        assert_eq!(s.next_deadline(), Some(at(60)));
        assert!(s.poll_due(at(59)).is_none());
        let (id, run) = s.poll_due(at(60)).expect("run 1 due");
        assert_eq!((id, run.logs_in()), (1, 2));
        assert!(s.poll_due(at(60)).is_none());
        assert_eq!(s.next_deadline(), Some(at(70)));
        assert_eq!(s.poll_due(at(100)).map(|(id, _)| id), Some(2));
        assert_eq!(s.next_deadline(), None);
        s.finish(1, Finished::Broken, at(100));
        assert_eq!(
            refused(s.offer(log(1, 2, 3), None, ip("192.0.2.1"), at(100))),
            Reason::AlreadyReported
        );
    }

    #[test]
    fn an_unwritten_run_comes_back_without_the_refused_log() {
        let t0 = Instant::now();
        let mut s = RunStore::new(LIMITS);
        let src = ip("192.0.2.1");
        s.offer(log(5, 0, 2), None, src, t0).unwrap();
        let one = s.stored_bytes();
        let Ok(Offer::Complete { run, .. }) = s.offer(log(5, 1, 2), None, src, t0) else {
            panic!("not complete");
        };
        let later = t0 + Duration::from_secs(5);
        s.finish(
            5,
            Finished::NotWritten {
                run,
                refused_peer: Some(1),
            },
            later,
        );
        assert_eq!(s.stored_bytes(), one);
        assert_eq!(s.incomplete(), 1);
        // Another timeout from the failure, not from the first upload.
        assert_eq!(s.next_deadline(), Some(later + LIMITS.run_timeout));
        // The refused log may be sent again and completes the run.
        assert!(matches!(
            s.offer(log(5, 1, 2), None, src, later),
            Ok(Offer::Complete { id: 5, .. })
        ));
        s.finish(5, Finished::Reported, later);
        assert_eq!(s.stored_bytes(), 0);
    }

    #[test]
    fn caps_on_peers_and_on_runs_per_source() {
        let t0 = Instant::now();
        let mut s = RunStore::new(LIMITS);
        assert_eq!(
            refused(s.offer(log(1, 0, 9), None, ip("192.0.2.1"), t0)),
            Reason::TooManyPeers
        );
        // Two addresses of one IPv6 /64 are one source.
        s.offer(log(1, 0, 2), None, ip("2001:db8::1"), t0).unwrap();
        s.offer(log(2, 0, 2), None, ip("2001:db8::2"), t0).unwrap();
        let third = s.offer(log(3, 0, 2), None, ip("2001:db8::3"), t0);
        let e = third.unwrap_err();
        assert_eq!((e.reason, e.kind()), (Reason::TooManyRuns, Kind::Rejected));
        // Logs of runs it already started are still taken, from anyone.
        s.offer(log(1, 1, 2), None, ip("192.0.2.1"), t0).unwrap();
        s.offer(log(3, 0, 2), None, ip("2001:db8:1::1"), t0)
            .unwrap();
        // A run that completed frees its source's slot.
        s.offer(log(4, 0, 2), None, ip("2001:db8::4"), t0).unwrap();
        assert_eq!(
            refused(s.offer(log(6, 0, 2), None, ip("2001:db8::4"), t0)),
            Reason::TooManyRuns
        );
    }

    #[test]
    fn refusal_kinds_follow_the_code() {
        let busy = Refusal::new(Reason::OverBudget, String::new());
        assert_eq!(busy.kind(), Kind::Busy);
        assert_eq!(
            Refusal::new(Reason::Duplicate, String::new()).kind(),
            Kind::Rejected
        );
    }
}
