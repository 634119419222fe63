use super::*;

/// Run a handshake to completion in memory; returns both sessions or the first error.
fn pair(ck: Key, sk: Key, role: Role) -> Result<(Session, Session), (bool, AuthError)> {
    let mut c = Handshake::client(ck, role, fresh32());
    let mut s = Handshake::server(sk, fresh32());
    let mut buf = Vec::new();
    for _ in 0..4 {
        while let Some(k) = c.poll_transmit(&mut buf) {
            s.handle_frame(k, &buf).map_err(|e| (true, e))?;
        }
        while let Some(k) = s.poll_transmit(&mut buf) {
            c.handle_frame(k, &buf).map_err(|e| (false, e))?;
        }
        if let (Some(a), Some(b)) = (c.take_session(), s.take_session()) {
            return Ok((a, b));
        }
    }
    panic!("handshake did not finish in 4 rounds");
}

#[test]
fn same_key_authenticates_and_messages_flow_both_ways() {
    let k = fresh32();
    let (mut c, mut s) = pair(k, k, Role::Agent).unwrap();
    let mut buf = Vec::new();
    for i in 0..3u8 {
        c.seal(&[i, 1, 2], &mut buf);
        assert_eq!(s.open(&buf).unwrap(), &[i, 1, 2]);
        s.seal(&[i], &mut buf);
        assert_eq!(c.open(&buf).unwrap(), &[i]);
    }
}

#[test]
fn wrong_key_is_refused_by_the_server_before_it_proves_anything() {
    let (ck, sk) = (fresh32(), fresh32());
    let err = pair(ck, sk, Role::Control).err().unwrap();
    assert_eq!(err, (true, AuthError::BadProof));
}

#[test]
fn server_without_the_key_is_refused_by_the_client() {
    let k = fresh32();
    let mut c = Handshake::client(k, Role::Agent, fresh32());
    let mut buf = Vec::new();
    c.poll_transmit(&mut buf).unwrap();
    c.handle_frame(
        Kind::C2Hello,
        &Hello {
            role: Role::Controller,
            version: VERSION,
            nonce: [1; 32],
        }
        .emit(),
    )
    .unwrap();
    c.poll_transmit(&mut buf).unwrap();
    assert_eq!(
        c.handle_frame(Kind::C2Auth, &[0; 32]),
        Err(AuthError::BadProof)
    );
    assert!(c.take_session().is_none());
}

/// Another release's Hello: refused with both versions named, never as a bad frame; the
/// server's own Hello stays queued so the client can learn its version too, and a client
/// that gets it refuses it the same way.
#[test]
fn another_protocol_version_is_refused_in_the_hello() {
    let k = fresh32();
    for (old, shown) in [
        (0, "version 1,"),
        (3, "version 3,"),
        (VERSION + 1, "version 6,"),
    ] {
        let mut s = Handshake::server(k, fresh32());
        let hello = Hello {
            role: Role::Agent,
            version: old,
            nonce: [2; 32],
        };
        let e = s.handle_frame(Kind::C2Hello, &hello.emit()).unwrap_err();
        assert_eq!(e, AuthError::Version(old));
        assert!(e.to_string().contains(shown), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("this mpcomm version {VERSION}")),
            "{e}"
        );
        let mut buf = Vec::new();
        assert_eq!(s.poll_transmit(&mut buf), Some(Kind::C2Hello));
        assert_eq!(Hello::parse(&buf).map(|h| h.role), Ok(Role::Controller));
        assert!(s.take_session().is_none());

        let mut c = Handshake::client(k, Role::Agent, fresh32());
        c.poll_transmit(&mut buf).unwrap();
        let theirs = Hello {
            role: Role::Controller,
            version: old,
            nonce: [3; 32],
        };
        assert_eq!(
            c.handle_frame(Kind::C2Hello, &theirs.emit()),
            Err(AuthError::Version(old))
        );
        assert_eq!(c.poll_transmit(&mut buf), None, "the client proves nothing");
    }
}

#[test]
fn roles_and_order_are_enforced() {
    let k = fresh32();
    let mut s = Handshake::server(k, fresh32());
    let hello = Hello {
        role: Role::Controller,
        version: VERSION,
        nonce: [0; 32],
    }
    .emit();
    assert_eq!(
        s.handle_frame(Kind::C2Hello, &hello),
        Err(AuthError::WrongRole(Role::Controller))
    );
    let mut s = Handshake::server(k, fresh32());
    assert_eq!(
        s.handle_frame(Kind::C2Auth, &[0; 32]),
        Err(AuthError::Unexpected(Kind::C2Auth))
    );
    let mut s = Handshake::server(k, fresh32());
    assert_eq!(
        s.handle_frame(Kind::C2Message, &[0; 40]),
        Err(AuthError::Unexpected(Kind::C2Message))
    );
    assert!(matches!(
        s.handle_frame(Kind::C2Hello, &[1, VERSION, 1]),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn replay_bitflip_reflection_and_cross_connection_frames_are_rejected() {
    let k = fresh32();
    let (mut c, mut s) = pair(k, k, Role::Agent).unwrap();
    let mut f0 = Vec::new();
    c.seal(b"hello", &mut f0);
    assert_eq!(s.open(&f0).unwrap(), b"hello");
    // Replay on the same connection.
    assert_eq!(
        s.open(&f0),
        Err(AuthError::Replay {
            expected: 1,
            got: 0
        })
    );
    // Every single-bit flip of a fresh frame.
    let mut f1 = Vec::new();
    c.seal(b"run", &mut f1);
    for bit in 0..f1.len() * 8 {
        let mut x = f1.clone();
        x[bit / 8] ^= 1 << (bit % 8);
        assert!(s.open(&x).is_err(), "bit {bit}");
    }
    assert_eq!(s.open(&f1).unwrap(), b"run");
    // Reflection: the server's own frame sent back to it.
    let mut f2 = Vec::new();
    s.seal(b"x", &mut f2);
    assert_eq!(s.open(&f2), Err(AuthError::BadTag));
    // A recorded frame replayed on a new connection with the same key.
    let (_c2, mut s2) = pair(k, k, Role::Agent).unwrap();
    assert_eq!(s2.open(&f0), Err(AuthError::BadTag));
    assert_eq!(s2.open(&[0; 10]), Err(AuthError::BadTag));
}
