//! The channel from a child peer to the process that started it (the lab, the C2 agent): the
//! parent binds a unix datagram socket ([`ParentSocket`]) and passes its path with
//! `peer --notify PATH`; the peer sends one [`wire::child`](crate::wire::child) message when
//! its sockets are bound (Ready) and one when its run is over (Outcome). Datagrams, so a
//! message arrives whole or not at all; a parent decides on these, not on stderr's words.
//!
//! A pathname socket, not an abstract one: the peers of `lab --netns` live in other network
//! namespaces, which have abstract names of their own but share the file system.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use super::args::Plan;
use crate::wire::child::{Reason, Repr, MAX_PATH, OUTCOME_FIXED_LEN};
use crate::wire::Error as WireError;

/// Send `repr` to the parent's socket at `path` (one datagram, from an unbound socket).
pub fn tell(path: &Path, repr: &Repr) -> io::Result<()> {
    let bytes = repr.to_bytes();
    let n = UnixDatagram::unbound()?.send_to(&bytes, path)?;
    if n != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
    }
    Ok(())
}

/// `--notify`: tell the parent (if there is one); a parent that is gone costs a note, not the run.
pub fn tell_parent(plan: &Plan, msg: &Repr) {
    if let Some(path) = &plan.notify {
        if let Err(e) = tell(path, msg) {
            say!("mpcomm peer: note: cannot notify {}: {e}", path.display());
        }
    }
}

/// The Outcome of a run that ends with exit code `code` (`peer::exit`).
pub fn tell_outcome(plan: &Plan, ok: bool, code: u8, run_id: Option<u64>, log: Option<&Path>) {
    use std::os::unix::ffi::OsStrExt;
    let msg = Repr::Outcome {
        peer: plan.id,
        ok,
        reason: Reason::from(code),
        run_id,
        log: log.map_or_else(Vec::new, |p| p.as_os_str().as_bytes().to_vec()),
    };
    tell_parent(plan, &msg);
}

/// The parent's end: a bound socket, its file removed on drop.
#[derive(Debug)]
pub struct ParentSocket {
    sock: UnixDatagram,
    path: PathBuf,
}

/// Big enough for any message (the largest is an Outcome with a [`MAX_PATH`] path).
pub const RECV_BUF: usize = OUTCOME_FIXED_LEN + MAX_PATH;

impl ParentSocket {
    /// Bind `dir/name` (a stale file of that name is replaced). Keep `dir` private: any
    /// process that can write to the socket can send messages.
    pub fn bind(dir: &Path, name: &str) -> io::Result<ParentSocket> {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path)?;
        Ok(ParentSocket { sock, path })
    }

    /// What goes after `--notify`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The socket, e.g. to register with a mio `Poll` (after `set_nonblocking(true)`).
    pub fn socket(&self) -> &UnixDatagram {
        &self.sock
    }

    /// The next datagram, decoded. An empty datagram is [`WireError::Truncated`] (the parent's
    /// own way to wake a blocked reader: [`ParentSocket::wake`]); `Err(io)` as the socket says
    /// (`WouldBlock` when non-blocking and nothing is there).
    pub fn recv(&self, buf: &mut [u8; RECV_BUF]) -> io::Result<Result<Repr, WireError>> {
        let n = self.sock.recv(buf)?;
        Ok(Repr::parse(&buf[..n]))
    }

    /// Wake a thread blocked in [`ParentSocket::recv`] with an empty datagram.
    pub fn wake(&self) -> io::Result<()> {
        UnixDatagram::unbound()?.send_to(&[], &self.path).map(drop)
    }

    /// A second handle on the same socket (for a reader thread).
    pub fn try_clone(&self) -> io::Result<UnixDatagram> {
        self.sock.try_clone()
    }
}

impl Drop for ParentSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_told_arrives_decoded_and_the_file_goes_with_the_socket() {
        let dir = Dir(std::env::temp_dir().join(format!("mpcomm-child-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let dir = &dir.0;
        let path;
        {
            let parent = ParentSocket::bind(dir, "n.sock").unwrap();
            path = parent.path().to_owned();
            let msg = Repr::Outcome {
                peer: 4,
                ok: false,
                reason: Reason::Upload,
                run_id: Some(7),
                log: b"/var/x.mplog".to_vec(),
            };
            tell(parent.path(), &msg).unwrap();
            parent.wake().unwrap();
            let mut buf = [0u8; RECV_BUF];
            assert_eq!(parent.recv(&mut buf).unwrap(), Ok(msg));
            assert_eq!(parent.recv(&mut buf).unwrap(), Err(WireError::Truncated));
        }
        assert!(!path.exists());
        // Nobody listening: the sender gets an error, not a hang.
        let ready = Repr::Ready {
            peer: 0,
            pid: 1,
            bound: "127.0.0.1:1".parse().unwrap(),
            rcvbuf: 0,
        };
        assert!(tell(&path, &ready).is_err());
    }

    /// Removed when the test ends, failed or not.
    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
