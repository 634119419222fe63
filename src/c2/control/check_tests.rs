//! The core's `c2 check` in virtual time: which agents get a CHECK and with what, results
//! forwarded per host, a lost agent and the deadline failing the hosts still missing, and the
//! refusals. No sockets, no sleeps.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::c2::preflight::{CHECK_WAIT, CONTROLLER_SLACK};
use crate::c2::proto::{CheckRequest, CheckResult, CheckSpec, Msg, Role, RunRequest};
use crate::c2::registry::ConnId;

const CONTROL: ConnId = 20;

fn core() -> Core {
    let mut cfg = ServeConfig::new("127.0.0.1:4569".parse().unwrap(), "/unused".into());
    cfg.peer_port = 5000;
    cfg.group = Some("239.1.2.3:5007".parse().unwrap());
    Core::new(&cfg, "127.0.0.1:4568".parse().unwrap(), 1)
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, n])
}

fn drain(c: &mut Core) -> Vec<(ConnId, Msg)> {
    std::iter::from_fn(|| c.poll_out())
        .take(10_000)
        .filter_map(|o| match o {
            Out::Send { to, msg } if msg != Msg::Heartbeat => Some((to, msg)),
            _ => None,
        })
        .collect()
}

fn connect(c: &mut Core, now: Instant, conn: ConnId, role: Role) {
    c.on_open(now, conn, SocketAddr::new(ip(conn as u8), 40000), None);
    c.on_handshake(conn, Some(role), true);
}

/// Agents on connections 10.., instance 100 + conn, advertising 10.0.0.conn; a control client.
fn fleet(now: Instant, agents: usize) -> Core {
    let mut c = core();
    for conn in 10..10 + agents {
        connect(&mut c, now, conn, Role::Agent);
        let register = Msg::Register {
            instance: 100 + conn as u64,
            advertise: Some(ip(conn as u8)),
            zone: String::new(),
            running: None,
        };
        c.handle(now, conn, &register);
    }
    connect(&mut c, now, CONTROL, Role::Control);
    drain(&mut c);
    c
}

fn request(peers: u16) -> CheckRequest {
    CheckRequest {
        peers,
        port: 0,
        fanout: true,
        multicast: true,
        group: None,
        duration_ms: 2000,
    }
}

fn specs(sent: &[(ConnId, Msg)]) -> Vec<(ConnId, CheckSpec)> {
    sent.iter()
        .filter_map(|(t, m)| match m {
            Msg::Check(s) => Some((*t, (**s).clone())),
            _ => None,
        })
        .collect()
}

fn results(sent: &[(ConnId, Msg)]) -> Vec<CheckResult> {
    sent.iter()
        .filter_map(|(t, m)| match m {
            Msg::CheckResult(r) if *t == CONTROL => Some((**r).clone()),
            _ => None,
        })
        .collect()
}

fn refusal(sent: &[(ConnId, Msg)]) -> String {
    sent.iter()
        .find_map(|(t, m)| match m {
            Msg::Refused { text } if *t == CONTROL => Some(text.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no refusal in {sent:?}"))
}

fn done(check_id: u64, report: &str) -> Msg {
    Msg::CheckDone {
        check_id,
        report: report.into(),
        error: String::new(),
    }
}

#[test]
fn every_idle_agent_checks_the_others_and_each_result_is_forwarded() {
    let t0 = Instant::now();
    let mut c = fleet(t0, 3);
    c.handle(t0, CONTROL, &Msg::CheckRequest(request(0)));
    let sent = drain(&mut c);
    let sent_specs = specs(&sent);
    let peers: Vec<SocketAddr> = [10, 11, 12]
        .iter()
        .map(|&n| SocketAddr::new(ip(n), 5000))
        .collect();
    assert_eq!(sent_specs.len(), 3, "all of them by default: {sent:?}");
    for (i, (conn, s)) in sent_specs.iter().enumerate() {
        assert_eq!(
            (*conn, usize::from(s.id)),
            (10 + i, i),
            "registration order"
        );
        assert_eq!(
            s.peers, peers,
            "the controller's peer port on advertised addresses"
        );
        assert_eq!(
            s.group,
            "239.1.2.3:5007".parse().unwrap(),
            "the controller's group"
        );
        assert!(s.fanout && s.multicast);
        assert_eq!(
            (s.duration_ms, s.wait_ms),
            (2000, CHECK_WAIT.as_millis() as u32)
        );
    }
    assert!(
        matches!(&sent.last(), Some((CONTROL, Msg::Progress { text })) if text.contains("3 hosts"))
    );
    let id = sent_specs[0].1.check_id;
    assert!(sent_specs.iter().all(|(_, s)| s.check_id == id));
    // Busy meanwhile: a run cannot take them, a second check is refused.
    assert!(c.registry().status(t0).iter().all(|a| a.busy));
    c.handle(t0, CONTROL, &Msg::CheckRequest(request(0)));
    assert!(refusal(&drain(&mut c)).contains("is in progress"));
    // Results in any order, each forwarded at once with its host number.
    c.handle(t0, 12, &done(id, "{\"pass\":true}"));
    c.handle(t0, 10, &done(id, "{\"pass\":true}"));
    let got = results(&drain(&mut c));
    assert_eq!(
        got.iter().map(|r| (r.host, r.hosts)).collect::<Vec<_>>(),
        [(2, 3), (0, 3)]
    );
    assert_eq!(
        (got[0].advertise, got[0].report.as_str()),
        (ip(12), "{\"pass\":true}")
    );
    // A result of another check, or twice, changes nothing.
    c.handle(t0, 10, &done(id, "{}"));
    c.handle(t0, 11, &done(id ^ 2, "{}"));
    assert!(results(&drain(&mut c)).is_empty());
    c.handle(t0, 11, &done(id, "{}"));
    assert_eq!(results(&drain(&mut c)).len(), 1);
    assert!(
        c.registry().status(t0).iter().all(|a| !a.busy),
        "idle again"
    );
    // The check is over: the next one is accepted.
    c.handle(t0, CONTROL, &Msg::CheckRequest(request(2)));
    assert_eq!(specs(&drain(&mut c)).len(), 2, "--peers 2: the first two");
}

#[test]
fn a_lost_agent_fails_at_once_and_a_silent_one_at_the_deadline() {
    let t0 = Instant::now();
    let mut c = fleet(t0, 3);
    let mut req = request(0);
    req.port = 6000;
    req.group = Some("239.9.9.9:6007".parse().unwrap());
    c.handle(t0, CONTROL, &Msg::CheckRequest(req));
    let sent = specs(&drain(&mut c));
    assert_eq!(sent[0].1.peers[0].port(), 6000);
    assert_eq!(sent[0].1.group, "239.9.9.9:6007".parse().unwrap());
    let id = sent[0].1.check_id;
    c.on_closed(t0, 11, &"reset");
    let lost = results(&drain(&mut c));
    assert_eq!(lost.len(), 1);
    assert_eq!((lost[0].host, lost[0].report.as_str()), (1, ""));
    assert!(lost[0].error.contains("lost"), "{}", lost[0].error);
    c.handle(t0, 10, &done(id, "{}"));
    assert_eq!(results(&drain(&mut c)).len(), 1);
    // Host 2 never answers: it fails at the agent's bound plus the controller's slack. Every
    // deadline before that leaves it pending (agents and the client answer heartbeats).
    let deadline = t0 + sent[2].1.bound() + CONTROLLER_SLACK;
    let mut now = t0;
    let mut late = Vec::new();
    for _ in 0..1000 {
        let Some(at) = c.poll_timeout() else { break };
        now = at;
        c.handle_timeout(at);
        let sent = drain(&mut c);
        for to in [10, 12, CONTROL] {
            c.handle(at, to, &Msg::Heartbeat);
        }
        late.extend(results(&sent));
        if !late.is_empty() || now > deadline {
            break;
        }
    }
    assert_eq!(now, deadline, "failed at its deadline, not before");
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].host, 2);
    assert!(late[0].error.contains("no result"), "{}", late[0].error);
}

#[test]
fn refusals_name_the_reason() {
    let t0 = Instant::now();
    let mut c = fleet(t0, 2);
    for (req, want) in [
        (
            request(3),
            "needs 3 idle agents: 2 of 2 live agents are idle",
        ),
        (request(1), "--peers must be 2..="),
        (
            CheckRequest {
                duration_ms: 0,
                ..request(0)
            },
            "--duration must be",
        ),
        (
            CheckRequest {
                fanout: false,
                multicast: false,
                ..request(0)
            },
            "--transport",
        ),
    ] {
        c.handle(t0, CONTROL, &Msg::CheckRequest(req));
        let sent = drain(&mut c);
        assert!(specs(&sent).is_empty(), "{sent:?}");
        assert!(refusal(&sent).contains(want), "{sent:?}");
    }
    // A run takes both agents: none idle for a check.
    let Ok(Some(Msg::RunRequest(run))) = super::prompt::parse_prompt("run 2 5") else {
        panic!("a run request")
    };
    let _: &RunRequest = &run;
    c.handle(t0, CONTROL, &Msg::RunRequest(run));
    drain(&mut c);
    c.handle(t0, CONTROL, &Msg::CheckRequest(request(0)));
    assert!(refusal(&drain(&mut c)).contains("needs 2 idle agents: 0 of 2"));
    // An exit abandons a check in flight, by name.
    let mut c = fleet(t0, 2);
    c.handle(t0, CONTROL, &Msg::CheckRequest(request(0)));
    drain(&mut c);
    c.handle(t0 + Duration::from_millis(1), 21, &Msg::StatusRequest);
    connect(&mut c, t0, 21, Role::Control);
    c.handle(t0, 21, &Msg::ExitRequest);
    assert!(refusal(&drain(&mut c)).contains("abandoned: the controller is exiting"));
}
