//! The controller's core in virtual time: fake connection ids, `Instant`s we advance, and
//! assertions on the outbox. No sockets, no threads, no sleeps.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::link::CloseReason;
use super::*;
use crate::c2::exit::{EXIT_GRACE, EXIT_WAIT};
use crate::c2::proto::{Msg, Role, RunRequest};
use crate::c2::registry::ConnId;
use crate::c2::timing::HEARTBEAT_EVERY;
use crate::wire::{Order, Transport};

const COMPARATOR: &str = "127.0.0.1:4568";
const CONTROL: ConnId = 20;

fn core() -> Core {
    let mut cfg = ServeConfig::new("127.0.0.1:4569".parse().unwrap(), "/unused".into());
    cfg.run_slack = Duration::from_secs(1);
    Core::new(&cfg, COMPARATOR.parse().unwrap(), 1)
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, n])
}

fn drain(c: &mut Core) -> Vec<Out> {
    std::iter::from_fn(|| c.poll_out()).take(10_000).collect()
}

fn sends(outs: &[Out]) -> Vec<(ConnId, Msg)> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Send { to, msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

fn logs(outs: &[Out]) -> Vec<&str> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Log(l) => Some(l.as_str()),
            _ => None,
        })
        .collect()
}

fn connect(c: &mut Core, now: Instant, conn: ConnId, role: Role) {
    let addr = SocketAddr::new(ip(conn as u8), 40000);
    c.on_open(now, conn, addr, Some(IpAddr::from([127, 0, 0, 1])));
    c.on_handshake(conn, Some(role), true);
}

/// An agent on connection `conn`, instance `100 + conn`, advertising 10.0.0.`conn`.
fn agent(c: &mut Core, now: Instant, conn: ConnId, running: Option<u64>) {
    connect(c, now, conn, Role::Agent);
    let register = Msg::Register {
        instance: 100 + conn as u64,
        advertise: Some(ip(conn as u8)),
        zone: String::new(),
        running,
    };
    c.handle(now, conn, &register);
}

fn request(peers: u16, msgs: u32) -> RunRequest {
    let Ok(Some(Msg::RunRequest(r))) = super::prompt::parse_prompt(&format!("run {peers} {msgs}"))
    else {
        panic!("the prompt builds a request")
    };
    r
}

fn refused_text(outs: &[Out], to: ConnId) -> String {
    sends(outs)
        .into_iter()
        .find_map(|(t, m)| match m {
            Msg::Refused { text } if t == to => Some(text),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no refusal to {to} in {outs:?}"))
}

/// Step to each deadline until `until`; live agents (and the control client) answer every
/// heartbeat. Returns everything that came out. Bounded in steps.
fn run_until(c: &mut Core, now: &mut Instant, until: Instant, live: &[ConnId]) -> Vec<Out> {
    let mut all = Vec::new();
    for _ in 0..1000 {
        let Some(at) = c.poll_timeout() else { break };
        if at > until {
            break;
        }
        assert!(at >= *now, "a deadline in the past would spin the loop");
        *now = at;
        c.handle_timeout(at);
        let outs = drain(c);
        for (to, m) in sends(&outs) {
            if m == Msg::Heartbeat && live.contains(&to) {
                c.handle(at, to, &Msg::Heartbeat);
            }
        }
        all.extend(outs);
        all.extend(drain(c));
        if c.is_done() {
            break;
        }
    }
    all
}

#[test]
fn a_run_goes_to_idle_agents_and_its_report_to_the_requester() {
    let t0 = Instant::now();
    let mut c = core();
    for conn in [10, 11, 12] {
        agent(&mut c, t0, conn, None);
    }
    connect(&mut c, t0, CONTROL, Role::Control);
    drain(&mut c);
    c.handle(t0, CONTROL, &Msg::RunRequest(request(2, 5)));
    let outs = drain(&mut c);
    let runs: Vec<(ConnId, u16, SocketAddr)> = sends(&outs)
        .into_iter()
        .filter_map(|(t, m)| match m {
            Msg::Run(spec) => Some((t, spec.peer_id, spec.comparator)),
            _ => None,
        })
        .collect();
    let cmp: SocketAddr = COMPARATOR.parse().unwrap();
    assert_eq!(runs, [(10, 0, cmp), (11, 1, cmp)], "registration order");
    let run_id = c.active_run().expect("a run in flight");
    assert!(
        matches!(&sends(&outs)[2], (CONTROL, Msg::Progress { text }) if text.contains("started"))
    );

    // A second request while it runs is refused, by name.
    connect(&mut c, t0, 21, Role::Control);
    c.handle(t0, 21, &Msg::RunRequest(request(1, 5)));
    let outs = drain(&mut c);
    assert_eq!(
        refused_text(&outs, 21),
        super::refusal::Refusal::RunInProgress(run_id).to_string()
    );

    let t1 = t0 + Duration::from_millis(100);
    c.handle(t1, 10, &Msg::RunReady { run_id });
    c.handle(t1, 10, &Msg::RunReady { run_id: run_id ^ 2 });
    let outs = drain(&mut c);
    assert_eq!(
        sends(&outs),
        [(
            CONTROL,
            Msg::Progress {
                text: format!("run {run_id:016x}: 1/2 peers ready")
            }
        )],
        "another run's RunReady is not counted"
    );

    // The report waits for the agents to say their peers ended.
    c.on_report(t1, run_id, "{\"run\":1}".into());
    assert!(sends(&drain(&mut c)).is_empty());
    for conn in [10, 11] {
        let finished = Msg::RunFinished {
            run_id,
            ok: true,
            detail: String::new(),
            running: None,
            refused: None,
        };
        c.handle(t1, conn, &finished);
    }
    let outs = drain(&mut c);
    assert_eq!(
        sends(&outs).last(),
        Some(&(
            CONTROL,
            Msg::RunReport {
                run_id,
                json: "{\"run\":1}".into()
            }
        ))
    );
    assert_eq!(c.active_run(), None);
    assert!(c.registry().status(t1).iter().all(|a| !a.busy));
    // A report nobody waits for is only logged.
    c.on_report(t1, run_id, "{}".into());
    assert!(logs(&drain(&mut c))[0].contains("did not start"));
}

#[test]
fn refusals_name_the_reason_and_busy_agents_are_not_chosen() {
    let t0 = Instant::now();
    let mut c = core();
    agent(&mut c, t0, 10, None);
    agent(&mut c, t0, 11, Some(7));
    connect(&mut c, t0, CONTROL, Role::Control);
    drain(&mut c);
    let ask = |c: &mut Core, r: RunRequest| {
        c.handle(t0, CONTROL, &Msg::RunRequest(r));
        refused_text(&drain(c), CONTROL)
    };
    assert!(ask(&mut c, request(2, 5)).contains("only 1 of 2 live agents are idle"));
    // Once the busy agent says its peer ended, both count.
    let finished = Msg::RunFinished {
        run_id: 7,
        ok: true,
        detail: String::new(),
        running: None,
        refused: None,
    };
    c.handle(t0, 11, &finished);
    drain(&mut c);
    assert!(ask(&mut c, request(3, 5)).contains("only 2 agents are live"));
    let path = RunRequest {
        wan: "../lan".into(),
        ..request(1, 5)
    };
    assert!(ask(&mut c, path).contains("not a path"));
    assert!(ask(&mut c, request(1, 0)).contains("msgs"));
    assert_eq!(c.active_run(), None, "nothing started");
    // Roles are kept apart: an agent cannot start a run, a control client cannot register.
    c.handle(t0, 10, &Msg::RunRequest(request(1, 5)));
    c.handle(
        t0,
        CONTROL,
        &Msg::Register {
            instance: 1,
            advertise: None,
            zone: String::new(),
            running: None,
        },
    );
    let outs = drain(&mut c);
    assert!(sends(&outs).is_empty(), "{outs:?}");
    assert_eq!(logs(&outs).len(), 2);
    assert!(logs(&outs).iter().all(|l| l.contains("not allowed")));
}

#[test]
fn a_run_without_a_report_times_out_and_frees_the_controller() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = core();
    agent(&mut c, t0, 10, None);
    connect(&mut c, t0, CONTROL, Role::Control);
    c.handle(t0, CONTROL, &Msg::RunRequest(request(1, 5)));
    drain(&mut c);
    // 5 messages at up to 100 ms, plus the 1 s slack of this configuration.
    let deadline = t0 + Duration::from_millis(1500);
    assert_eq!(c.poll_timeout(), Some(t0 + HEARTBEAT_EVERY));
    let outs = run_until(&mut c, &mut now, deadline, &[10, CONTROL]);
    assert!(refused_text(&outs, CONTROL).contains("timed out without a comparator report"));
    assert_eq!(now, deadline, "at the deadline, not after");
    assert_eq!(c.active_run(), None);
    assert!(
        c.registry().status(now)[0].busy,
        "the agent stays busy until it says its peer ended"
    );
}

#[test]
fn silent_and_unauthenticated_connections_are_closed_on_time() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = core();
    let addr = |n| SocketAddr::new(ip(n), 1);
    c.on_open(t0, 1, addr(1), None); // never says hello
    c.on_open(t0, 2, addr(2), None); // says hello, never proves the key
    c.on_handshake(2, Some(Role::Agent), false);
    connect(&mut c, t0, 3, Role::Agent); // authenticated, never registers
    agent(&mut c, t0, 4, None); // registers, then goes silent
    drain(&mut c);
    // The unregistered agent answers heartbeats, so only its register timeout closes it.
    let outs = run_until(&mut c, &mut now, t0 + Duration::from_secs(10), &[3]);
    let mut closes = Vec::new();
    let mut beats = 0;
    for o in &outs {
        match o {
            Out::Close { conn, reason } => closes.push((*conn, *reason)),
            Out::Send {
                to: 4,
                msg: Msg::Heartbeat,
            } => beats += 1,
            _ => {}
        }
    }
    assert_eq!(
        closes,
        [
            (1, CloseReason::NoHello),
            (4, CloseReason::Silent),
            (2, CloseReason::NoAuthentication),
            (3, CloseReason::NotRegistered),
        ]
    );
    assert_eq!(beats, 3, "heartbeats at 1, 2 and 3 s, then silent at 3.5 s");
    assert!(logs(&outs)
        .iter()
        .any(|l| l.contains("disconnected: silent: heartbeats missed; 0 live")));
    assert_eq!(
        now,
        t0 + Duration::from_secs(5),
        "the last close, and no wake-up after it"
    );
    assert_eq!(c.poll_timeout(), None, "nothing left to time");
    assert!(!c.registry().status(now)[0].live);
}

#[test]
fn exit_stops_agents_also_late_ones_and_answers_the_requester_once_they_closed() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = core();
    agent(&mut c, t0, 10, None);
    agent(&mut c, t0, 11, None);
    connect(&mut c, t0, CONTROL, Role::Control);
    connect(&mut c, t0, 21, Role::Control);
    c.handle(t0, 21, &Msg::RunRequest(request(2, 5)));
    drain(&mut c);
    c.handle(t0, CONTROL, &Msg::ExitRequest);
    let outs = drain(&mut c);
    let shutdowns: Vec<ConnId> = sends(&outs)
        .into_iter()
        .filter(|(_, m)| *m == Msg::Shutdown)
        .map(|(t, _)| t)
        .collect();
    assert_eq!(shutdowns, [10, 11]);
    assert!(refused_text(&outs, 21).contains("abandoned: the controller is exiting"));
    assert!(logs(&outs)[0].contains("exit requested: stopping 2 agents"));
    assert!(c.is_exiting() && c.active_run().is_none());
    // Nothing new starts, and a second exit is refused.
    c.handle(t0, 21, &Msg::RunRequest(request(1, 5)));
    c.handle(t0, 21, &Msg::ExitRequest);
    let outs = drain(&mut c);
    assert!(refused_text(&outs, 21).contains("shutting down"));
    assert_eq!(sends(&outs).len(), 2);

    // The first two close; one in its reconnect backoff registers within the grace: told too.
    c.on_closed(t0, 10, &"connection closed");
    c.on_closed(t0, 11, &"connection closed");
    let late = t0 + Duration::from_millis(2500);
    let outs = run_until(&mut c, &mut now, late, &[CONTROL]);
    assert!(
        !sends(&outs).iter().any(|(t, _)| *t == CONTROL),
        "the requester gets no heartbeats: {outs:?}"
    );
    c.handle(late, CONTROL, &Msg::Heartbeat);
    agent(&mut c, late, 12, None);
    let outs = drain(&mut c);
    assert_eq!(sends(&outs), [(12, Msg::Shutdown)]);
    assert!(!c.is_done(), "still within the grace period");
    let closed = late + Duration::from_millis(100);
    c.on_closed(closed, 12, &"connection closed");
    let outs = drain(&mut c);
    assert!(logs(&outs)[0].contains("disconnected: connection closed; 0 live"));
    assert!(!c.is_done(), "the grace period runs to its end");

    let outs = run_until(&mut c, &mut now, t0 + EXIT_GRACE + EXIT_WAIT, &[CONTROL]);
    assert_eq!(
        now,
        t0 + EXIT_GRACE,
        "done at the end of the grace, no later"
    );
    assert!(c.is_done());
    assert_eq!(
        outs[outs.len() - 3..],
        [
            Out::Send {
                to: CONTROL,
                msg: Msg::ExitDone { agents: 3 }
            },
            Out::Log("exiting: 3 agents stopped".into()),
            Out::Exit {
                flush: Some(CONTROL)
            },
        ]
    );
    // Done: later inputs change nothing.
    c.handle(now, 21, &Msg::StatusRequest);
    c.handle_timeout(now + Duration::from_secs(60));
    assert!(drain(&mut c).is_empty());
}

#[test]
fn an_agent_that_never_closes_is_given_up_on_and_counted() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = core();
    agent(&mut c, t0, 10, None);
    agent(&mut c, t0, 11, None);
    c.on_prompt(t0, "exit\n");
    drain(&mut c);
    c.on_closed(t0, 10, &"connection closed");
    // 11 keeps its link alive (it answers heartbeats) but never closes it.
    let outs = run_until(&mut c, &mut now, t0 + Duration::from_secs(60), &[11]);
    assert_eq!(now, t0 + EXIT_GRACE + EXIT_WAIT);
    assert!(logs(&outs).contains(&"1 agents did not close their connection in time"));
    assert_eq!(
        outs[outs.len() - 3..],
        [
            Out::Prompt(PromptOut::Say("1 agents stopped".into())),
            Out::Log("exiting: 1 agents stopped".into()),
            Out::Exit { flush: None },
        ]
    );
}

#[test]
fn the_prompt_is_answered_at_the_prompt() {
    let t0 = Instant::now();
    let mut c = core();
    c.on_prompt(t0, "\n");
    assert!(drain(&mut c).is_empty(), "a blank line is nothing");
    c.on_prompt(t0, "status\n");
    assert_eq!(drain(&mut c), [Out::Prompt(PromptOut::Status(Vec::new()))]);
    c.on_prompt(t0, "dance\n");
    assert_eq!(
        drain(&mut c),
        [Out::Prompt(PromptOut::Say(prompt::USAGE.into()))]
    );
    c.on_prompt(t0, "run 9 10\n");
    let outs = drain(&mut c);
    assert!(
        matches!(&outs[1], Out::Prompt(PromptOut::Say(t)) if t.starts_with("refused: 9 peers requested but only 0 agents are live")),
        "{outs:?}"
    );
    // A run from the prompt reports at the prompt.
    agent(&mut c, t0, 10, None);
    c.on_prompt(t0, "run 1 5 multicast causal\n");
    let outs = drain(&mut c);
    let Some((_, Msg::Run(spec))) = sends(&outs).into_iter().next() else {
        panic!("{outs:?}")
    };
    assert_eq!(
        (spec.transport, spec.order),
        (Transport::Multicast, Order::Causal)
    );
    let run_id = spec.run_id;
    c.on_report(t0, run_id, "{}".into());
    let finished = Msg::RunFinished {
        run_id,
        ok: true,
        detail: String::new(),
        running: None,
        refused: None,
    };
    c.handle(t0, 10, &finished);
    assert!(drain(&mut c).contains(&Out::Prompt(PromptOut::Report("{}".into()))));
}

#[test]
fn every_agent_gets_its_heartbeat_at_its_own_deadline() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = core();
    for conn in 0..500 {
        agent(&mut c, t0 + Duration::from_millis(conn as u64), conn, None);
    }
    drain(&mut c);
    assert_eq!(c.poll_timeout(), Some(t0 + HEARTBEAT_EVERY));
    // Every step fires at least one heartbeat; none is early or late.
    let outs = run_until(&mut c, &mut now, t0 + Duration::from_millis(1499), &[]);
    let beats = sends(&outs).len();
    assert_eq!(beats, 500, "one heartbeat per agent within its second");
}
