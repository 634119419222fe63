//! The controller's agent registry: who registered, from where, in which zone, live or lost.
//! Plain data over `Instant`; the controller driver feeds it connection events.

use std::net::IpAddr;
use std::time::Instant;

use super::proto::{AgentInfo, MAX_AGENTS_LISTED};
use super::timing::LINK_DEAD_AFTER;

/// Which connection an agent currently speaks on (the driver's token number).
pub type ConnId = usize;

#[derive(Debug, Clone)]
pub struct Agent {
    pub instance: u64,
    pub advertise: IpAddr,
    pub zone: String,
    pub conn: Option<ConnId>,
    pub last_seen: Instant,
    /// The run this agent's peer is running, as the agent last said (Register, RunFinished)
    /// or as we ordered it (Run). Cleared only by the agent's own word or a lost link.
    pub busy: Option<u64>,
    /// Registration order; kept when the same agent instance reconnects.
    seq: u64,
}

/// How agents get their peer ids (`c2 serve --order-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderBy {
    /// The order in which agents first registered.
    Registration,
    /// Zone label, then registration order.
    Zone,
}

#[derive(Debug)]
pub struct Registry {
    agents: Vec<Agent>,
    next_seq: u64,
    order: OrderBy,
}

impl Registry {
    pub fn new(order: OrderBy) -> Registry {
        Registry {
            agents: Vec::new(),
            next_seq: 0,
            order,
        }
    }

    /// An authenticated agent registered on `conn`, running `running` (its own word). The same
    /// instance reconnecting keeps its place.
    pub fn register(
        &mut self,
        now: Instant,
        conn: ConnId,
        instance: u64,
        advertise: IpAddr,
        zone: String,
        running: Option<u64>,
    ) {
        if let Some(a) = self.agents.iter_mut().find(|a| a.instance == instance) {
            a.conn = Some(conn);
            a.advertise = advertise;
            a.zone = zone;
            a.last_seen = now;
            a.busy = running;
            return;
        }
        if self.agents.len() >= MAX_AGENTS_LISTED {
            // Forget the agent lost the longest ago; a full table of live agents refuses nobody
            // silently: the newcomer replaces the oldest entry only if that one is not connected.
            if let Some(i) = self
                .agents
                .iter()
                .enumerate()
                .filter(|(_, a)| a.conn.is_none())
                .min_by_key(|(_, a)| a.last_seen)
                .map(|(i, _)| i)
            {
                self.agents.remove(i);
            } else {
                return;
            }
        }
        self.agents.push(Agent {
            instance,
            advertise,
            zone,
            conn: Some(conn),
            last_seen: now,
            busy: running,
            seq: self.next_seq,
        });
        self.next_seq += 1;
    }

    pub fn by_conn(&mut self, conn: ConnId) -> Option<&mut Agent> {
        self.agents.iter_mut().find(|a| a.conn == Some(conn))
    }

    pub fn seen(&mut self, conn: ConnId, now: Instant) {
        if let Some(a) = self.by_conn(conn) {
            a.last_seen = now;
        }
    }

    /// The agent's link is gone: it is lost, and says what it runs when it registers again.
    pub fn disconnected(&mut self, conn: ConnId) {
        if let Some(a) = self.by_conn(conn) {
            a.conn = None;
            a.busy = None;
        }
    }

    pub fn is_live(a: &Agent, now: Instant) -> bool {
        a.conn.is_some() && now.saturating_duration_since(a.last_seen) < LINK_DEAD_AFTER
    }

    /// Live agents in peer-id order.
    pub fn live(&self, now: Instant) -> Vec<&Agent> {
        let mut v: Vec<&Agent> = self
            .agents
            .iter()
            .filter(|a| Registry::is_live(a, now))
            .collect();
        match self.order {
            OrderBy::Registration => v.sort_by_key(|a| a.seq),
            OrderBy::Zone => v.sort_by(|a, b| (&a.zone, a.seq).cmp(&(&b.zone, b.seq))),
        }
        v
    }

    pub fn connected(&self) -> impl Iterator<Item = &Agent> {
        self.agents.iter().filter(|a| a.conn.is_some())
    }

    pub fn status(&self, now: Instant) -> Vec<AgentInfo> {
        let mut v: Vec<&Agent> = self.agents.iter().collect();
        v.sort_by_key(|a| a.seq);
        v.iter()
            .map(|a| AgentInfo {
                advertise: a.advertise,
                zone: a.zone.clone(),
                live: Registry::is_live(a, now),
                busy: a.busy.is_some(),
                seen_ms_ago: now
                    .saturating_duration_since(a.last_seen)
                    .as_millis()
                    .min(u32::MAX as u128) as u32,
            })
            .collect()
    }

    /// The busy state of an agent: `Some(run)` when we order it to run, and whatever the agent
    /// says it runs when it reports (a refusal because it is busy keeps it busy).
    pub fn set_busy(&mut self, instance: u64, run: Option<u64>) {
        if let Some(a) = self.agents.iter_mut().find(|a| a.instance == instance) {
            a.busy = run;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn order_liveness_and_reconnect_keep_places() {
        let t0 = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut r = Registry::new(OrderBy::Registration);
        r.register(t0, 10, 111, ip("10.0.0.3"), "b".into(), None);
        r.register(t0, 11, 222, ip("10.0.0.1"), "a".into(), None);
        r.register(t0, 12, 333, ip("10.0.0.2"), "b".into(), Some(7));
        assert!(r.status(t0)[2].busy, "registered while running a peer");
        let ids = |r: &Registry, t| r.live(t).iter().map(|a| a.instance).collect::<Vec<_>>();
        assert_eq!(ids(&r, t0), [111, 222, 333]);
        // 222 goes silent; others heartbeat.
        let t1 = t0 + LINK_DEAD_AFTER;
        r.seen(10, t1);
        r.seen(12, t1);
        assert_eq!(ids(&r, t1), [111, 333]);
        assert!(!r.status(t1)[1].live);
        // 111's connection drops, then it reconnects on a new connection: same place.
        r.disconnected(10);
        assert_eq!(ids(&r, t1), [333]);
        r.register(
            t1 + Duration::from_millis(5),
            20,
            111,
            ip("10.0.0.3"),
            "b".into(),
            None,
        );
        r.register(t1, 21, 222, ip("10.0.0.1"), "a".into(), None);
        assert_eq!(ids(&r, t1 + Duration::from_millis(10)), [111, 222, 333]);
        r.order = OrderBy::Zone;
        assert_eq!(ids(&r, t1 + Duration::from_millis(10)), [222, 111, 333]);
        // Busy until the agent itself says otherwise; a lost link forgets (it re-registers).
        r.set_busy(333, None);
        assert!(!r.status(t1)[2].busy);
        r.set_busy(333, Some(9));
        assert!(r.status(t1)[2].busy);
        r.disconnected(12);
        assert!(!r.status(t1)[2].busy);
    }
}
