use super::*;
use crate::peer::machine::{Config, Phase};
use crate::peer::socket::open_fanout;
use crate::wire::packet::{Body, Repr};

/// A fan-out target that fails (port 0: EINVAL) in the middle of the peer list is counted,
/// and the peers after it still get every datagram.
#[test]
fn a_failing_destination_does_not_stop_the_others_copies() {
    for batched in [true, false] {
        let own = open_fanout("127.0.0.1:0".parse().unwrap()).unwrap();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        other.set_nonblocking(true).unwrap();
        let peers = vec![
            own.socket.local_addr().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            other.local_addr().unwrap(),
        ];
        let mut cfg = Config::new(0, 3, 1);
        cfg.hello_retry = Duration::from_millis(50);
        cfg.handshake_timeout = Duration::from_millis(300);
        let mut machine = Machine::new(cfg, Now::read(), None);
        let mut driver =
            Driver::with_batching(own.socket, Route::Fanout(peers), false, batched).unwrap();
        driver.run(&mut machine).unwrap();
        assert_eq!(
            machine.phase(),
            Phase::Failed,
            "nobody answers: handshake times out"
        );
        let mut hellos = 0;
        let mut buf = [0u8; 2048];
        // Bounded: the machine sent a few HELLOs in 300 ms, not thousands.
        for _ in 0..10_000 {
            let Ok(n) = other.recv(&mut buf) else { break };
            let repr = Repr::decode(&buf[..n]).expect("a well-formed datagram");
            assert!(matches!(repr.body, Body::Hello { .. }));
            hellos += 1;
        }
        assert!(
            hellos >= 2,
            "batched={batched}: {hellos} HELLOs reached the last peer"
        );
        assert_eq!(
            driver.send_errors, hellos,
            "batched={batched}: one error per HELLO, for the port-0 peer"
        );
    }
}
