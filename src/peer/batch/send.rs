//! The send side: a queue of datagrams the machine wrote, each with the destinations it still
//! has to reach, sent with as few `sendmmsg` calls as the kernel allows — every destination of
//! every queued datagram in one call (up to the kernel's 1024 headers), so a turn of 32 multicast DATA is
//! one syscall, not 32.
//!
//! Slots are written in place by the machine (`next_buf`) and never move; a datagram's slot is
//! free again once every destination got it. Order is kept: a datagram is sent to all its
//! destinations before the next one starts, and what a full socket refused stays queued, in
//! order, for the next `flush`.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::RawFd;

use socket2::SockAddr;

use super::zeroed_mmsghdr;
use crate::wire::packet::MAX_DATAGRAM;

/// Datagrams one queue holds.
pub const MAX_SLOTS: usize = 32;
/// Headers one `sendmmsg` takes: the kernel's bound (UIO_MAXIOV).
const MAX_HEADERS: usize = 1024;
/// EINTR retries one `flush` allows before it gives the turn back.
const EINTR_RETRIES: u32 = 8;

/// A queued datagram: its slot (its length is in the slot's iovec), the destinations (route
/// indices) it has not reached yet, and whether it goes out on the unicast socket.
#[derive(Debug, Clone)]
struct Queued {
    slot: usize,
    left: Range<usize>,
    unicast: bool,
}

/// What one `flush` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub calls: u64,
    pub datagrams: u64,
    /// Destinations that failed with an error other than a full socket (e.g. no route):
    /// skipped, so one unreachable peer does not stop the others' copies.
    pub errors: u64,
}

pub struct SendBatch {
    /// `slots` buffers of `MAX_DATAGRAM` bytes, zeroed lazily by the allocator: a slot costs
    /// memory only once written.
    bufs: Vec<u8>,
    iov: Vec<libc::iovec>,
    addrs: Vec<SockAddr>,
    /// Built per call for the queue's front: one per (datagram, destination).
    hdrs: Vec<libc::mmsghdr>,
    /// A ring over `slots` entries: `queue[(head + k) % slots]` for k < len.
    queue: Vec<Queued>,
    head: usize,
    len: usize,
    /// The slot the machine writes next (the one after the queue's last).
    slots: usize,
    batched: bool,
}

// SAFETY: the raw pointers only point into buffers this struct owns.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// A queue for datagrams to `targets` (indexed as the route indexes them); `batched =
    /// false` forces one `sendto` per destination.
    pub fn new(targets: &[SocketAddr], batched: bool) -> SendBatch {
        let slots = MAX_SLOTS;
        let mut bufs = vec![0u8; slots * MAX_DATAGRAM];
        let iov = (0..slots)
            .map(|k| libc::iovec {
                iov_base: bufs[k * MAX_DATAGRAM..].as_mut_ptr().cast(),
                iov_len: 0,
            })
            .collect();
        // Enough for every destination of every slot, up to what one call takes: with many
        // fan-out destinations a flush makes several calls.
        let hdrs = vec![zeroed_mmsghdr(); (slots * targets.len().max(1)).min(MAX_HEADERS)];
        SendBatch {
            bufs,
            iov,
            addrs: targets.iter().map(|&a| SockAddr::from(a)).collect(),
            hdrs,
            queue: vec![
                Queued {
                    slot: 0,
                    left: 0..0,
                    unicast: false,
                };
                slots
            ],
            head: 0,
            len: 0,
            slots,
            batched,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn has_room(&self) -> bool {
        self.len < self.slots
    }

    /// The socket the queue's first datagram waits for (`Some(true)`: the unicast one).
    pub fn waiting_on(&self) -> Option<bool> {
        (self.len > 0).then(|| self.queue[self.head].unicast)
    }

    fn slot_of(&self, k: usize) -> usize {
        (self.head + k) % self.slots
    }

    /// Where the machine writes the next datagram (only while `has_room`).
    pub fn next_buf(&mut self) -> &mut [u8] {
        assert!(self.has_room(), "next_buf on a full send queue");
        let slot = self.slot_of(self.len);
        &mut self.bufs[slot * MAX_DATAGRAM..(slot + 1) * MAX_DATAGRAM]
    }

    /// Queue the datagram just written into `next_buf` for destinations `to` (none: nothing
    /// to send, nothing queued).
    pub fn push(&mut self, len: usize, to: Range<usize>, unicast: bool) {
        assert!(self.has_room(), "push on a full send queue");
        if to.is_empty() {
            return;
        }
        let slot = self.slot_of(self.len);
        self.iov[slot].iov_len = len.min(MAX_DATAGRAM);
        self.queue[slot] = Queued {
            slot,
            left: to,
            unicast,
        };
        self.len += 1;
    }

    /// Send what is queued, on `fd(unicast)`, until the queue is empty (`Ok(true)`) or a socket
    /// is full (`Ok(false)`: the rest stays queued). Errors other than a full socket skip the
    /// destination that failed (counted in `sent.errors`).
    pub fn flush(&mut self, fd: impl Fn(bool) -> RawFd, sent: &mut Sent) -> io::Result<bool> {
        let mut retries = 0;
        while self.len > 0 {
            let unicast = self.queue[self.head].unicast;
            let n = self.build(unicast);
            sent.calls += 1;
            match self.send(fd(unicast), n) {
                Ok(done) => {
                    sent.datagrams += done as u64;
                    self.advance(done);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted && retries < EINTR_RETRIES => {
                    retries += 1
                }
                // Any other error (EINTR past the retries too): that destination is skipped.
                Err(_) => {
                    sent.errors += 1;
                    self.advance(1);
                }
            }
        }
        Ok(true)
    }

    /// Headers for the front of the queue: every remaining destination of each datagram, as
    /// long as they use the same socket and fit; how many.
    fn build(&mut self, unicast: bool) -> usize {
        // Unbatched, one `sendto` takes one header: build no more than that.
        let cap = if self.batched { self.hdrs.len() } else { 1 };
        let mut n = 0;
        for k in 0..self.len {
            let q = &self.queue[self.slot_of(k)];
            if q.unicast != unicast || n >= cap {
                break;
            }
            if n > 0 && n + q.left.len() > cap {
                break;
            }
            for t in q.left.clone().take(cap - n) {
                let a = &self.addrs[t];
                let h = &mut self.hdrs[n].msg_hdr;
                h.msg_name = a.as_ptr() as *mut libc::c_void;
                h.msg_namelen = a.len();
                h.msg_iov = &mut self.iov[q.slot];
                h.msg_iovlen = 1;
                n += 1;
            }
        }
        n
    }

    /// One syscall over the first `n` headers: how many went out (≥ 1), or the first one's
    /// error.
    fn send(&mut self, fd: RawFd, n: usize) -> io::Result<usize> {
        if self.batched && n > 1 {
            let flags = libc::MSG_DONTWAIT as _;
            // SAFETY: the headers point at our address array, iovecs and buffers, all alive
            // and unchanged during the call.
            let sent = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as _, flags) };
            if sent > 0 {
                return Ok(sent as usize);
            }
            let e = io::Error::last_os_error();
            if sent == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if e.raw_os_error() != Some(libc::ENOSYS) {
                return Err(e);
            }
            self.batched = false;
        }
        // One destination: `sendto` (the kernel copies no msghdr and iovec from user space).
        let h = &self.hdrs[0].msg_hdr;
        // SAFETY: h's iovec points into our buffer with at least iov_len bytes; the address is
        // ours, alive.
        let r = unsafe {
            let iov = &*h.msg_iov;
            libc::sendto(
                fd,
                iov.iov_base,
                iov.iov_len,
                libc::MSG_DONTWAIT,
                h.msg_name as *const libc::sockaddr,
                h.msg_namelen,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(1)
    }

    /// `n` (datagram, destination) sends are done, from the front of the queue.
    fn advance(&mut self, mut n: usize) {
        while n > 0 && self.len > 0 {
            let q = &mut self.queue[self.head];
            let step = n.min(q.left.len());
            q.left.start += step;
            n -= step;
            if q.left.is_empty() {
                self.head = (self.head + 1) % self.slots;
                self.len -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;
