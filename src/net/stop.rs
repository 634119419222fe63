//! The one way to end a service loop from another thread (a signal handler, a test, the
//! controller stopping its comparator): set a flag, wake the loop. The loop reads the flag
//! after every wake-up; nothing else crosses threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::Waker;

/// Cheap to clone; every clone stops the same loop.
#[derive(Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl StopHandle {
    /// A handle for the loop `waker` belongs to.
    pub fn new(waker: Arc<Waker>) -> StopHandle {
        StopHandle {
            flag: Arc::new(AtomicBool::new(false)),
            waker,
        }
    }

    /// Ask the loop to stop; returns at once.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // A failed wake only delays the stop to the next event or deadline.
        let _ = self.waker.wake();
    }

    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The loop's waker (for other threads that only need to wake it, e.g. a worker).
    pub fn waker(&self) -> &Arc<Waker> {
        &self.waker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    #[test]
    fn a_stop_from_another_thread_wakes_the_loop() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let stop = StopHandle::new(waker);
        assert!(!stop.is_stopped());
        let other = stop.clone();
        let t = std::thread::spawn(move || other.stop());
        let mut events = Events::with_capacity(4);
        // Bounded: a few polls of at most 10 s each.
        for _ in 0..5 {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            if stop.is_stopped() {
                break;
            }
        }
        t.join().unwrap();
        assert!(stop.is_stopped());
    }
}
