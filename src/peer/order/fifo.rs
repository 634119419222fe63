//! FIFO order: sender `s`'s message `k` is delivered after its `0..k`, each of them delivered
//! or given up by repair.

use super::{Bits, Msg, Sink, Store};

pub struct Fifo {
    /// Per sender: the next seq to deliver.
    next: Vec<u32>,
    msgs: u32,
    store: Store,
    gone: Bits,
}

impl Fifo {
    pub fn new(peers: u16, msgs: u32) -> Fifo {
        Fifo {
            next: vec![0; usize::from(peers)],
            msgs,
            store: Store::new(peers, msgs),
            gone: Bits::new(usize::from(peers) * msgs as usize),
        }
    }

    pub fn arrive(&mut self, m: Msg, sink: &mut Sink) {
        let s = m.sender;
        self.store.put(m);
        self.release(s, sink);
    }

    pub fn skip(&mut self, sender: u16, seq: u32, sink: &mut Sink) {
        self.gone.set(self.store.index(sender, seq));
        self.release(sender, sink);
    }

    fn release(&mut self, s: u16, sink: &mut Sink) {
        let next = &mut self.next[usize::from(s)];
        while *next < self.msgs {
            if let Some(m) = self.store.take(s, *next) {
                sink.deliver(&m);
            } else if !self.gone.get(self.store.index(s, *next)) {
                break;
            }
            *next += 1;
        }
    }

    pub fn held(&self) -> usize {
        self.store.held()
    }
}
