use super::*;

#[test]
fn lost_is_attributed_per_receiver_to_its_kernel_drops() {
    let peer = |p: u16, lost: u64, kernel_drops: u64| PeerSummary {
        peer: p,
        present: true,
        lost,
        kernel_drops,
        ..PeerSummary::default()
    };
    let mut r = Report {
        lost: 1_100,
        kernel_drops: 1_150,
        // Peer 1's 150 drops were control datagrams; peer 0's 50 lost are unexplained.
        per_peer: vec![peer(0, 1_050, 1_000), peer(1, 50, 150)],
        ..Report::default()
    };
    assert_eq!(r.lost_to_kernel_drops(), 1_050);
    assert_eq!(
        r.lost_line(),
        "lost 1,100, of which 1,050 dropped by this host's full receive buffers \
         (kernel_drops) (1,150 kernel drops in all, some repaired or control datagrams)"
    );
    r.per_peer.clear();
    r.kernel_drops = 1_100;
    assert_eq!(
        r.lost_line(),
        "lost 1,100, of which 1,100 dropped by this host's full receive buffers (kernel_drops)"
    );
    r.lost = 0;
    assert_eq!(r.lost_line(), "lost 0");
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(thousands(999), "999");
}
