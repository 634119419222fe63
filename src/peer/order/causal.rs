//! Causal order with vector timestamps (Birman, Schiper, Stephenson's CBCAST).
//!
//! A DATA from `p` carries `V`: `V[p]` = its seq, `V[r]` = how many of `r`'s messages `p` had
//! delivered when it sent. A receiver delivers it once it delivered `p`'s earlier messages
//! (`next[p] == V[p]`) and at least `V[r]` of every other `r`'s. Messages repair gave up count
//! as delivered (they never will be), so a loss delays, but does not block, what follows it.
//!
//! Held messages keep their vectors in a pool of `peers`-sized chunks with a free list: it
//! grows to the largest number held at once, then nothing is allocated.

use super::{Bits, Msg, Sink, Store};

pub struct Causal {
    n: usize,
    msgs: u32,
    next: Vec<u32>,
    store: Store,
    gone: Bits,
    /// Store indices of held messages.
    waiting: Vec<usize>,
    pool: Vec<u32>,
    chunk_of: Vec<u32>,
    free: Vec<u32>,
    own: Vec<u32>,
}

impl Causal {
    pub fn new(peers: u16, msgs: u32) -> Causal {
        let n = usize::from(peers);
        let len = n * msgs as usize;
        Causal {
            n,
            msgs,
            next: vec![0; n],
            store: Store::new(peers, msgs),
            gone: Bits::new(len),
            waiting: Vec::new(),
            pool: Vec::new(),
            chunk_of: vec![0; len],
            free: Vec::new(),
            own: vec![0; n],
        }
    }

    /// The vector stamp of our own message `seq` (what we delivered so far).
    pub fn stamp(&mut self, me: u16, seq: u32) -> &[u32] {
        self.own.copy_from_slice(&self.next);
        self.own[usize::from(me)] = seq;
        &self.own
    }

    pub fn arrive(&mut self, m: Msg, vector: impl Fn(usize) -> u32, sink: &mut Sink) {
        let chunk = match self.free.pop() {
            Some(c) => c,
            None => {
                self.pool.resize(self.pool.len() + self.n, 0);
                (self.pool.len() / self.n - 1) as u32
            }
        };
        let at = chunk as usize * self.n;
        for (r, v) in self.pool[at..at + self.n].iter_mut().enumerate() {
            *v = vector(r);
        }
        let idx = self.store.index(m.sender, m.seq);
        self.chunk_of[idx] = chunk;
        self.store.put(m);
        self.waiting.push(idx);
        self.release(sink);
    }

    pub fn skip(&mut self, sender: u16, seq: u32, sink: &mut Sink) {
        self.gone.set(self.store.index(sender, seq));
        self.pass_gone(sender);
        self.release(sink);
    }

    fn pass_gone(&mut self, s: u16) {
        let next = &mut self.next[usize::from(s)];
        while *next < self.msgs
            && self
                .gone
                .get(usize::from(s) * self.msgs as usize + *next as usize)
        {
            *next += 1;
        }
    }

    fn deliverable(&self, idx: usize) -> bool {
        let p = idx / self.msgs as usize;
        let seq = (idx % self.msgs as usize) as u32;
        if self.next[p] != seq {
            return false;
        }
        let at = self.chunk_of[idx] as usize * self.n;
        let v = &self.pool[at..at + self.n];
        (0..self.n).all(|r| r == p || v[r] <= self.next[r])
    }

    /// Deliver every held message whose predecessors are in, until none is.
    fn release(&mut self, sink: &mut Sink) {
        loop {
            let mut progressed = false;
            let mut i = 0;
            while i < self.waiting.len() {
                let idx = self.waiting[i];
                if !self.deliverable(idx) {
                    i += 1;
                    continue;
                }
                self.waiting.swap_remove(i);
                let p = (idx / self.msgs as usize) as u16;
                let seq = (idx % self.msgs as usize) as u32;
                let m = self.store.take(p, seq).expect("a waiting message is held");
                sink.deliver(&m);
                self.free.push(self.chunk_of[idx]);
                self.next[usize::from(p)] = seq + 1;
                self.pass_gone(p);
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    pub fn held(&self) -> usize {
        self.store.held()
    }
}
