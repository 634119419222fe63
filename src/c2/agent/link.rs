//! The agent's link to the controller: connect, handshake, register, heartbeat, and reconnect
//! with backoff. Outcomes made while the link is down wait for the next registration.

use mio::net::TcpStream;
use mio::Interest;
use std::net::ToSocketAddrs;
use std::time::Instant;

use super::{log, Agent, LINK, MAX_PENDING};
use crate::c2::auth::{fresh32, Handshake};
use crate::c2::conn::{Conn, ConnError};
use crate::c2::proto::{Msg, Role};
use crate::c2::timing::{Liveness, HANDSHAKE_TIMEOUT};

pub(super) enum Link {
    Down {
        retry_at: Instant,
    },
    Connecting {
        conn: Conn<TcpStream>,
        since: Instant,
        tcp_up: bool,
    },
    Up {
        conn: Conn<TcpStream>,
        live: Liveness,
    },
}

impl Agent {
    pub(super) fn fail_link(&mut self, why: impl std::fmt::Display) {
        if let Link::Connecting { conn, .. } | Link::Up { conn, .. } = &mut self.link {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        let why = why.to_string();
        if why != self.last_err {
            log(format_args!(
                "link to controller {}: {why}; reconnecting with backoff",
                self.cfg.controller
            ));
            self.last_err = why;
        }
        self.link = Link::Down {
            retry_at: Instant::now() + self.backoff.next_delay(),
        };
    }

    pub(super) fn connect(&mut self, now: Instant) {
        let addr = match self.cfg.controller.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            Ok(None) => return self.fail_link("controller name resolves to no address"),
            Err(e) => return self.fail_link(format_args!("cannot resolve controller: {e}")),
        };
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => return self.fail_link(format_args!("connect: {e}")),
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            LINK,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.fail_link(format_args!("register socket: {e}"));
        }
        let hs = Handshake::client(self.key, Role::Agent, fresh32());
        self.link = Link::Connecting {
            conn: Conn::new(stream, hs),
            since: now,
            tcp_up: false,
        };
    }

    pub(super) fn on_link_event(&mut self) {
        let now = Instant::now();
        let result: Result<bool, ConnError> = match &mut self.link {
            Link::Down { .. } => return,
            Link::Connecting { conn, tcp_up, .. } => {
                if !*tcp_up {
                    if let Ok(Some(e)) | Err(e) = conn.stream.take_error() {
                        return self.fail_link(format_args!("connect: {e}"));
                    }
                    match conn.stream.peer_addr() {
                        Ok(_) => *tcp_up = true,
                        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
                        Err(e) => return self.fail_link(format_args!("connect: {e}")),
                    }
                }
                conn.flush().and_then(|_| conn.on_readable(&mut self.msgs))
            }
            Link::Up { conn, .. } => conn.flush().and_then(|_| conn.on_readable(&mut self.msgs)),
        };
        // Whether the controller's Hello came (before a close, that means: wrong key).
        let heard_hello =
            matches!(&self.link, Link::Connecting { conn, .. } if conn.peer_role().is_some());
        if result.is_err() {
            // Orders that arrived before the failure were authenticated: keep them (a RUN's
            // outcome waits for the next registration); the buffer must not outlive the link.
            self.handle_msgs(now);
        }
        match result {
            Err(ConnError::Auth(e)) => self.fail_link(format_args!("authentication failed: {e}")),
            Err(e) if e.is_closed() && matches!(self.link, Link::Connecting { .. }) && heard_hello => self.fail_link(
                "controller closed the connection during authentication: is the key file the same on both sides?",
            ),
            Err(e) if e.is_closed() && matches!(self.link, Link::Connecting { .. }) => self.fail_link(
                "controller closed the connection before its hello: too many connections are authenticating there, or it runs another mpcomm release (its log names both C2 versions), or it is not an mpcomm controller",
            ),
            Err(e) => self.fail_link(e),
            Ok(established) => {
                if established {
                    self.on_established(now);
                }
                self.handle_msgs(now);
            }
        }
    }

    pub(super) fn on_established(&mut self, now: Instant) {
        let Link::Connecting { conn, .. } =
            std::mem::replace(&mut self.link, Link::Down { retry_at: now })
        else {
            return;
        };
        let mut conn = conn;
        let advertise = self
            .cfg
            .advertise
            .or_else(|| conn.stream.local_addr().ok().map(|a| a.ip()));
        let mut r = conn.send(&Msg::Register {
            instance: self.instance,
            advertise,
            zone: self.cfg.zone.clone(),
            running: self.running_id(),
        });
        let pending: Vec<Msg> = self.pending.drain(..).collect();
        for m in pending {
            let m = self.stamp(m);
            r = r.and_then(|_| conn.send(&m));
        }
        let mut live = Liveness::new(now);
        live.sent(now);
        self.link = Link::Up { conn, live };
        if let Err(e) = r.and_then(|_| self.flush_link()) {
            return self.fail_link(e);
        }
        self.backoff.reset();
        self.last_err.clear();
        log(format_args!(
            "registered with controller {} as {}{}",
            self.cfg.controller,
            advertise.map_or("?".into(), |a| a.to_string()),
            if self.cfg.zone.is_empty() {
                String::new()
            } else {
                format!(" in zone {}", self.cfg.zone)
            }
        ));
        if !self.notified_ready {
            self.notified_ready = true;
            if let Err(e) = crate::c2::notify::notify("READY=1") {
                log(format_args!("cannot notify systemd: {e}"));
            }
        }
    }

    pub(super) fn flush_link(&mut self) -> Result<(), ConnError> {
        if let Link::Up { conn, .. } = &mut self.link {
            conn.flush()?;
        }
        Ok(())
    }

    /// Send now if the link is up, else keep it for the next registration (outcomes only).
    pub(super) fn send_or_keep(&mut self, m: Msg) {
        let m = self.stamp(m);
        if let Link::Up { conn, live } = &mut self.link {
            live.sent(Instant::now());
            if let Err(e) = conn.send(&m).and_then(|_| conn.flush()) {
                self.pending.push_back(m);
                return self.fail_link(e);
            }
            return;
        }
        if matches!(m, Msg::RunFinished { .. }) {
            if self.pending.len() == MAX_PENDING {
                self.pending.pop_front();
            }
            self.pending.push_back(m);
        }
    }

    pub(super) fn on_timers(&mut self, now: Instant) {
        match &mut self.link {
            Link::Down { retry_at } if now >= *retry_at => self.connect(now),
            Link::Connecting { since, .. } if now >= *since + HANDSHAKE_TIMEOUT => self.fail_link(
                format_args!("no authenticated connection within {HANDSHAKE_TIMEOUT:?}"),
            ),
            Link::Up { live, .. } if live.is_dead(now) => {
                self.fail_link("controller silent: heartbeats missed")
            }
            Link::Up { conn, live } if live.heartbeat_due(now) => {
                live.sent(now);
                if let Err(e) = conn.send(&Msg::Heartbeat).and_then(|_| conn.flush()) {
                    self.fail_link(e);
                }
            }
            _ => {}
        }
        if self.running.as_ref().is_some_and(|r| r.pidfd.is_none()) {
            self.reap_child();
        }
    }
}
