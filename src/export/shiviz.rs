//! `mpcomm log export --shiviz`: delivery logs as a ShiViz input file (a space-time diagram of
//! the run, with vector clocks rebuilt from the logs — nothing is added on the wire).
//!
//! # What is written, exactly
//!
//! ShiViz (<https://bestchai.bitbucket.io/shiviz/>) reads a file whose first line is the log
//! parsing regular expression, whose second line is the "multiple executions delimiter"
//! regular expression, then an empty line, then the log text. This module writes:
//!
//! ```text
//! (?<host>\S*) (?<clock>{.*})\n(?<event>.*)          <- REGEX: GoVector's own, unchanged
//! === (?<trace>.*) ===                                <- DELIMITER
//!                                                     <- empty line
//! === run 0x00000000000000ab ===                      <- one execution per run id
//! peer1 {"peer1":1}
//! send p1#0 ns=1000
//! peer0 {"peer0":1,"peer1":1}
//! deliver p1#0 ns=1500 arrival=0
//! …
//! ```
//!
//! Each event is two lines, exactly as GoVector (the Go logger made for ShiViz) writes them:
//! `HOST CLOCK` where CLOCK is a JSON object of host → count, then one line of description.
//! Hosts are `peer0`, `peer1`, … (the log's peer id). The description is `send pS#Q ns=T` (T the
//! sender's clock at send) or `deliver pS#Q ns=T arrival=A` (T the receiver's clock at
//! delivery, A the arrival index), `pS#Q` naming message Q of peer S; a delivery whose send is
//! present but could not be placed before it (see below) is written `deliver-unordered pS#Q …`.
//!
//! # Which events
//!
//! * Executions: the logs are grouped by run id, in increasing run id order; a run's hosts are
//!   the peers whose log was given (two logs of the same run and peer are refused).
//! * A send event for every message of a present host that some given log delivered: one per
//!   message, at the send time from the sender's own record of it (peers deliver their own
//!   messages) or, if the sender's log lacks it, from the first record of the lowest receiver
//!   that has it (every record carries `send_ns`). Messages nobody delivered are unknown.
//! * A delivery event for every first delivery in a present host's log (duplicates — a second
//!   record of the same message in the same log — are left out).
//! * The sender's log missing: its sends are left out (it is no host), and deliveries of its
//!   messages have no dependency.
//!
//! # Order on a host and clocks
//!
//! A host's events are its sends in seq order merged with its deliveries in log (delivery)
//! order, by that host's clock (`send_ns` for sends, `deliver_ns` for deliveries); at equal
//! times the send comes first (a message delivered to its own sender in the same nanosecond
//! must follow its send). Each sequence keeps its own true order even if the clock stepped.
//!
//! Vector clocks, as ShiViz checks them: a host's own entry is 1 at its first event and rises
//! by exactly 1 per event; a send takes the host's clock plus one; a delivery takes the join
//! (entry-wise max) of the host's clock and its message's send-event clock, plus one. Entries
//! are only for present hosts and zero entries are omitted (as GoVector does).
//!
//! Events are computed in a causal order (a delivery waits until its send is computed). If the
//! per-host orders form a cycle — only possible when a host's wall clock stepped back during
//! the run — the first blocked delivery (lowest host) gets no dependency and is written
//! `deliver-unordered`, so the diagram stays valid and says what happened. The events are
//! written in the order computed, so every send appears before its deliveries.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use crate::wire::log::{LogHeader, Record};

/// The log parsing regular expression (JavaScript/XRegExp named groups, as ShiViz wants).
pub const REGEX: &str = r"(?<host>\S*) (?<clock>{.*})\n(?<event>.*)";
/// The multiple executions delimiter: one line `=== run 0x… ===` before each run.
pub const DELIMITER: &str = r"=== (?<trace>.*) ===";

/// One peer's log, parsed.
#[derive(Debug, Clone)]
pub struct PeerLog {
    pub header: LogHeader,
    /// In delivery order.
    pub records: Vec<Record>,
}

/// A message: sender and seq.
type Msg = (u16, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Send,
    Deliver {
        arrival: u32,
    },
    /// A delivery whose send could not be placed before it (cycle): no dependency.
    Unordered {
        arrival: u32,
    },
}

#[derive(Debug, Clone)]
struct Event {
    host: u16,
    kind: Kind,
    msg: Msg,
    ns: u64,
    clock: BTreeMap<u16, u64>,
}

/// Write the ShiViz file for `logs` (any runs, any order) to `out`; returns (executions,
/// events) written.
pub fn write(logs: &[PeerLog], out: &mut dyn Write) -> anyhow::Result<(usize, usize)> {
    let mut runs: BTreeMap<u64, BTreeMap<u16, &PeerLog>> = BTreeMap::new();
    for log in logs {
        let h = &log.header;
        let run = runs.entry(h.run_id).or_default();
        if let Some(first) = run.values().next() {
            if first.header.peers != h.peers {
                anyhow::bail!(
                    "run {:016x}: logs disagree on the number of peers ({} and {})",
                    h.run_id,
                    first.header.peers,
                    h.peers
                );
            }
        }
        if run.insert(h.peer_id, log).is_some() {
            anyhow::bail!(
                "run {:016x}: two logs of peer {} given",
                h.run_id,
                h.peer_id
            );
        }
    }
    writeln!(out, "{REGEX}")?;
    writeln!(out, "{DELIMITER}")?;
    writeln!(out)?;
    let mut total = 0;
    for (run_id, peers) in &runs {
        writeln!(out, "=== run {run_id:016x} ===")?;
        let events = execution(peers);
        total += events.len();
        for e in &events {
            write_event(e, out)?;
        }
    }
    Ok((runs.len(), total))
}

fn write_event(e: &Event, out: &mut dyn Write) -> std::io::Result<()> {
    write!(out, "peer{} {{", e.host)?;
    for (i, (h, n)) in e.clock.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        write!(out, "{sep}\"peer{h}\":{n}")?;
    }
    writeln!(out, "}}")?;
    let (s, q) = e.msg;
    match e.kind {
        Kind::Send => writeln!(out, "send p{s}#{q} ns={}", e.ns),
        Kind::Deliver { arrival } => {
            writeln!(out, "deliver p{s}#{q} ns={} arrival={arrival}", e.ns)
        }
        Kind::Unordered { arrival } => {
            writeln!(
                out,
                "deliver-unordered p{s}#{q} ns={} arrival={arrival}",
                e.ns
            )
        }
    }
}

/// One run's events with their clocks, in a causal order.
fn execution(peers: &BTreeMap<u16, &PeerLog>) -> Vec<Event> {
    // Send times: the sender's own record first, else the lowest receiver's first record.
    let mut send_ns: HashMap<Msg, u64> = HashMap::new();
    for (&id, log) in peers {
        for r in log.records.iter().filter(|r| r.sender == id) {
            send_ns.entry((r.sender, r.seq)).or_insert(r.send_ns);
        }
    }
    for log in peers.values() {
        for r in &log.records {
            if peers.contains_key(&r.sender) {
                send_ns.entry((r.sender, r.seq)).or_insert(r.send_ns);
            }
        }
    }
    // Per host: its sends in seq order merged with its first deliveries in log order.
    let mut sends: BTreeMap<u16, Vec<(u32, u64)>> = BTreeMap::new();
    for (&(s, q), &ns) in &send_ns {
        sends.entry(s).or_default().push((q, ns));
    }
    let mut queues: BTreeMap<u16, Vec<Event>> = BTreeMap::new();
    for (&id, log) in peers {
        let mut mine = sends.remove(&id).unwrap_or_default();
        mine.sort_unstable();
        let mut seen = std::collections::HashSet::new();
        let delivered: Vec<&Record> = log
            .records
            .iter()
            .filter(|r| seen.insert((r.sender, r.seq)))
            .collect();
        let (mut i, mut j) = (0, 0);
        let mut q = Vec::with_capacity(mine.len() + delivered.len());
        while i < mine.len() || j < delivered.len() {
            let take_send = match (mine.get(i), delivered.get(j)) {
                (Some(s), Some(d)) => s.1 <= d.deliver_ns,
                (Some(_), None) => true,
                _ => false,
            };
            if take_send {
                let (seq, ns) = mine[i];
                q.push(Event {
                    host: id,
                    kind: Kind::Send,
                    msg: (id, seq),
                    ns,
                    clock: BTreeMap::new(),
                });
                i += 1;
            } else {
                let r = delivered[j];
                q.push(Event {
                    host: id,
                    kind: Kind::Deliver { arrival: r.arrival },
                    msg: (r.sender, r.seq),
                    ns: r.deliver_ns,
                    clock: BTreeMap::new(),
                });
                j += 1;
            }
        }
        queues.insert(id, q);
    }
    // Compute clocks in a causal order: round-robin over hosts, a delivery waits for its send.
    let mut send_clock: HashMap<Msg, BTreeMap<u16, u64>> = HashMap::new();
    let mut cursor: BTreeMap<u16, usize> = queues.keys().map(|&h| (h, 0)).collect();
    let mut clock: BTreeMap<u16, BTreeMap<u16, u64>> = BTreeMap::new();
    let total: usize = queues.values().map(Vec::len).sum();
    let mut done = Vec::with_capacity(total);
    let ready = |e: &Event, send_clock: &HashMap<Msg, BTreeMap<u16, u64>>| match e.kind {
        Kind::Send | Kind::Unordered { .. } => true,
        Kind::Deliver { .. } => !send_ns.contains_key(&e.msg) || send_clock.contains_key(&e.msg),
    };
    while done.len() < total {
        let mut progressed = false;
        for (&h, q) in queues.iter_mut() {
            let c = cursor.get_mut(&h).expect("a cursor per host");
            while *c < q.len() && ready(&q[*c], &send_clock) {
                let e = &mut q[*c];
                let vc = clock.entry(h).or_default();
                if let Kind::Deliver { .. } = e.kind {
                    if let Some(sc) = send_clock.get(&e.msg) {
                        for (&k, &v) in sc {
                            let x = vc.entry(k).or_insert(0);
                            *x = (*x).max(v);
                        }
                    }
                }
                *vc.entry(h).or_insert(0) += 1;
                e.clock = vc.clone();
                if e.kind == Kind::Send {
                    send_clock.insert(e.msg, e.clock.clone());
                }
                done.push(e.clone());
                *c += 1;
                progressed = true;
            }
        }
        if !progressed {
            // A cycle (a clock stepped back): cut it at the lowest blocked host.
            let (&h, q) = queues
                .iter_mut()
                .find(|(h, q)| cursor[*h] < q.len())
                .expect("events remain");
            let e = &mut q[cursor[&h]];
            if let Kind::Deliver { arrival } = e.kind {
                e.kind = Kind::Unordered { arrival };
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(run: u64, peer: u16, n: u16, recs: &[(u16, u32, u64, u64)]) -> PeerLog {
        PeerLog {
            header: LogHeader {
                run_id: run,
                peer_id: peer,
                peers: n,
                msgs: 2,
                ..LogHeader::default()
            },
            records: recs
                .iter()
                .enumerate()
                .map(|(i, &(sender, seq, send_ns, deliver_ns))| Record {
                    sender,
                    seq,
                    send_ns,
                    recv_ns: deliver_ns,
                    deliver_ns,
                    arrive_ns: deliver_ns,
                    arrival: i as u32,
                    ..Record::default()
                })
                .collect(),
        }
    }

    fn export(logs: &[PeerLog]) -> String {
        let mut out = Vec::new();
        write(logs, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// (host line, event line) pairs of the first execution.
    fn events(text: &str) -> Vec<(String, String)> {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], REGEX);
        assert_eq!(lines[1], DELIMITER);
        assert_eq!(lines[2], "");
        assert!(lines[3].starts_with("=== run "));
        lines[4..]
            .chunks(2)
            .map(|c| (c[0].to_owned(), c[1].to_owned()))
            .collect()
    }

    /// 3 peers × 2 messages, every peer delivering all 6 in some order.
    fn three() -> Vec<PeerLog> {
        // Sends: p0 at 10, 20; p1 at 12, 22; p2 at 14, 24 (each on its own clock).
        vec![
            log(
                7,
                0,
                3,
                &[
                    (0, 0, 10, 11),
                    (1, 0, 12, 15),
                    (0, 1, 20, 21),
                    (2, 0, 14, 30),
                    (1, 1, 22, 31),
                    (2, 1, 24, 32),
                ],
            ),
            log(
                7,
                1,
                3,
                &[
                    (0, 0, 10, 13),
                    (1, 0, 12, 13),
                    (1, 1, 22, 23),
                    (2, 0, 14, 25),
                    (0, 1, 20, 26),
                    (2, 1, 24, 27),
                ],
            ),
            log(
                7,
                2,
                3,
                &[
                    (2, 0, 14, 14),
                    (0, 0, 10, 16),
                    (2, 1, 24, 24),
                    (1, 0, 12, 28),
                    (0, 1, 20, 29),
                    (1, 1, 22, 33),
                ],
            ),
        ]
    }

    #[test]
    fn three_peers_two_messages_hand_checked_clocks() {
        let ev = events(&export(&three()));
        assert_eq!(ev.len(), 6 + 18);
        let find = |host: &str, text: &str| {
            ev.iter()
                .find(|(h, e)| h.starts_with(&format!("{host} ")) && e.starts_with(text))
                .unwrap_or_else(|| panic!("{host} {text}"))
                .0
                .clone()
        };
        assert_eq!(find("peer0", "send p0#0 "), r#"peer0 {"peer0":1}"#);
        // p0: send0@10, deliver p0#0@11, deliver p1#0@15, send1@20 …
        assert_eq!(
            find("peer0", "deliver p1#0 "),
            r#"peer0 {"peer0":3,"peer1":1}"#
        );
        assert_eq!(
            find("peer0", "send p0#1 "),
            r#"peer0 {"peer0":4,"peer1":1}"#
        );
        // p1: deliver p0#0@13 comes after its own send p1#0@12 and before deliver p1#0@13
        // (ties: send first, then log order).
        assert_eq!(find("peer1", "send p1#0 "), r#"peer1 {"peer1":1}"#);
        assert_eq!(
            find("peer1", "deliver p0#0 "),
            r#"peer1 {"peer0":1,"peer1":2}"#
        );
        // p2: send p2#0@14 then its own delivery @14 (send first at equal time).
        assert_eq!(find("peer2", "send p2#0 "), r#"peer2 {"peer2":1}"#);
        assert_eq!(find("peer2", "deliver p2#0 "), r#"peer2 {"peer2":2}"#);
        // p2 delivers p0#0@16 after its own send p2#0@14: p0's send clock {p0:1}.
        assert_eq!(
            find("peer2", "deliver p0#0 "),
            r#"peer2 {"peer0":1,"peer2":3}"#
        );
        // Every send appears before its deliveries in the file.
        for (i, (_, e)) in ev.iter().enumerate() {
            if let Some(id) = e.strip_prefix("deliver ") {
                let id = id.split(' ').next().unwrap();
                let s = ev
                    .iter()
                    .position(|(_, x)| x.starts_with(&format!("send {id} ")));
                assert!(s.unwrap() < i, "{e}");
            }
        }
    }

    #[test]
    fn missing_sender_log_leaves_its_sends_out_and_its_deliveries_without_dependency() {
        let mut logs = three();
        logs.remove(1);
        let text = export(&logs);
        assert!(!text.contains("peer1 {"), "peer1 is no host");
        assert!(!text.contains("\"peer1\""), "peer1 in no clock");
        assert!(!text.contains("send p1#"));
        let ev = events(&text);
        assert_eq!(ev.len(), 4 + 12);
        let d = ev
            .iter()
            .find(|(h, e)| h.starts_with("peer0 ") && e.starts_with("deliver p1#0 "))
            .unwrap();
        // p0: send0, deliver p0#0, deliver p1#0 (no dependency).
        assert_eq!(d.0, r#"peer0 {"peer0":3}"#);
    }

    #[test]
    fn send_time_from_a_receiver_when_the_sender_did_not_deliver_its_own_message() {
        // p0's log lacks its own p0#1; p1 carries its send_ns.
        let logs = vec![
            log(1, 0, 2, &[(0, 0, 10, 11)]),
            log(1, 1, 2, &[(0, 0, 10, 12), (0, 1, 20, 25)]),
        ];
        let text = export(&logs);
        assert!(text.contains(r#"peer0 {"peer0":3}"#), "{text}");
        assert!(text.contains("send p0#1 ns=20\n"), "{text}");
        assert!(
            text.contains("peer1 {\"peer0\":3,\"peer1\":2}\ndeliver p0#1 "),
            "{text}"
        );
    }

    #[test]
    fn duplicates_become_one_event_and_runs_separate_executions() {
        let logs = vec![
            log(2, 0, 1, &[(0, 0, 10, 11), (0, 0, 10, 12)]),
            log(1, 0, 1, &[(0, 0, 5, 6)]),
        ];
        let mut out = Vec::new();
        let (runs, events) = write(&logs, &mut out).unwrap();
        assert_eq!((runs, events), (2, 4));
        let text = String::from_utf8(out).unwrap();
        let a = text.find("=== run 0000000000000001 ===").unwrap();
        let b = text.find("=== run 0000000000000002 ===").unwrap();
        assert!(a < b);
        assert_eq!(text.matches("deliver p0#0 ").count(), 2);
    }

    #[test]
    fn a_clock_step_back_cycle_is_cut_and_said() {
        // p0 delivers p1#0 before sending p0#0; p1 delivers p0#0 before sending p1#0 (by the
        // clocks): impossible in real time, so one delivery loses its dependency.
        let logs = vec![
            log(1, 0, 2, &[(1, 0, 50, 5)]),
            log(1, 1, 2, &[(0, 0, 10, 20)]),
        ];
        let text = export(&logs);
        assert_eq!(text.matches("deliver-unordered ").count(), 1, "{text}");
        assert!(
            text.contains("peer0 {\"peer0\":1}\ndeliver-unordered p1#0 "),
            "{text}"
        );
    }

    #[test]
    fn inconsistent_logs_are_refused() {
        let mut out = Vec::new();
        let two = [log(1, 0, 2, &[]), log(1, 0, 2, &[])];
        assert!(write(&two, &mut out).is_err());
        let peers = [log(1, 0, 2, &[]), log(1, 1, 3, &[])];
        assert!(write(&peers, &mut out).is_err());
    }
}
