//! The times the space-time diagram draws, read from a log's records: [`PeerLog`] keeps
//! orders and latency codes only, so the diagram reads the log bytes once more and keeps just
//! the messages it will draw (every `stride`-th), which bounds memory by the arrow cap.
//!
//! [`PeerLog`]: crate::compare::PeerLog

use crate::wire::{self, log::LogView};

/// One drawn delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drawn {
    pub sender: u16,
    pub seq: u32,
    pub send_ns: u64,
    pub deliver_ns: u64,
    /// When it reached the ordering stage (deliver − arrive = hold-back).
    pub arrive_ns: u64,
}

/// The drawn deliveries of one receiver and the time span of all its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Times {
    pub receiver: u16,
    pub drawn: Vec<Drawn>,
    /// Earliest send_ns and latest deliver_ns over every record (drawn or not).
    pub first_ns: u64,
    pub last_ns: u64,
}

impl Times {
    /// The deliveries of messages whose index (sender × M + seq) is a multiple of `stride`,
    /// at most `max_drawn` of them (a log of duplicates cannot grow it); records with seq ≥ M
    /// (no expected message) are not drawn.
    pub fn from_bytes(bytes: &[u8], stride: u32, max_drawn: usize) -> Result<Times, wire::Error> {
        let view = LogView::parse(bytes)?;
        let m = u64::from(view.header.msgs);
        let stride = u64::from(stride.max(1));
        let mut t = Times {
            receiver: view.header.peer_id,
            first_ns: u64::MAX,
            ..Times::default()
        };
        for r in view.records() {
            t.first_ns = t.first_ns.min(r.send_ns);
            t.last_ns = t.last_ns.max(r.deliver_ns);
            let seq = u64::from(r.seq);
            let wanted = seq < m && (u64::from(r.sender) * m + seq) % stride == 0;
            if wanted && t.drawn.len() < max_drawn {
                t.drawn.push(Drawn {
                    sender: r.sender,
                    seq: r.seq,
                    send_ns: r.send_ns,
                    deliver_ns: r.deliver_ns,
                    arrive_ns: r.arrive_ns,
                });
            }
        }
        t.drawn.shrink_to_fit();
        if t.first_ns == u64::MAX {
            t.first_ns = 0;
        }
        Ok(t)
    }

    /// Heap bytes held (what a stored upload costs the service).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Times>() + self.drawn.capacity() * std::mem::size_of::<Drawn>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::log::{encode, LogHeader, Record};

    fn rec(sender: u16, seq: u32, send_ns: u64, deliver_ns: u64) -> Record {
        Record {
            sender,
            seq,
            send_ns,
            recv_ns: deliver_ns,
            deliver_ns,
            arrive_ns: deliver_ns - 1,
            ..Record::default()
        }
    }

    #[test]
    fn keeps_every_stride_th_message_and_the_whole_span() {
        let header = LogHeader {
            peer_id: 1,
            peers: 2,
            msgs: 3,
            ..LogHeader::default()
        };
        let records = [
            rec(0, 0, 100, 150),
            rec(0, 1, 110, 160),
            rec(1, 0, 90, 170),
            rec(1, 1, 120, 180),
            rec(1, 7, 50, 999), // seq ≥ M: spans, never drawn
        ];
        let bytes = encode(&header, &records);
        let t = Times::from_bytes(&bytes, 2, usize::MAX).unwrap();
        assert_eq!(t.receiver, 1);
        assert_eq!((t.first_ns, t.last_ns), (50, 999));
        // Indices 0, 1, 3, 4: multiples of 2 are 0 and 4.
        let drawn: Vec<(u16, u32)> = t.drawn.iter().map(|d| (d.sender, d.seq)).collect();
        assert_eq!(drawn, [(0, 0), (1, 1)]);
        assert_eq!(t.drawn[1].arrive_ns, 179);
        assert_eq!(
            Times::from_bytes(&bytes, 1, usize::MAX)
                .unwrap()
                .drawn
                .len(),
            4
        );
        assert_eq!(Times::from_bytes(&bytes, 1, 3).unwrap().drawn.len(), 3);
        assert!(Times::from_bytes(&bytes[..10], 1, usize::MAX).is_err());
    }
}
