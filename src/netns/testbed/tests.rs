use super::stale::creator_pid;
use super::*;

#[test]
fn ipv6_group_macs_take_the_low_32_bits() {
    let g: Ipv6Addr = "ff32::4000:1234:5678".parse().unwrap();
    assert_eq!(mac_of_v6_group(g), "33:33:12:34:56:78");
    assert_eq!(mac_of_v6_group(MLDV2_REPORTS), "33:33:00:00:00:16");
}

#[test]
fn macs_follow_the_address() {
    assert_eq!(mac_of(Ipv4Addr::new(10, 200, 7, 1)), "02:00:0a:c8:07:01");
    assert_eq!(mac_of(Ipv4Addr::new(10, 200, 7, 254)), "02:00:0a:c8:07:fe");
    assert_eq!(
        mac_of(Ipv4Addr::new(239, 255, 136, 140)),
        "01:00:5e:7f:88:8c"
    );
    assert_eq!(mac_of(IGMPV3_REPORTS), "01:00:5e:00:00:16");
}

#[test]
fn creator_pid_only_from_our_names() {
    assert_eq!(creator_pid("mpc-1234-0badf00d-h0"), Some(1234));
    assert_eq!(creator_pid("mpc-1234-0badf00d-sw"), Some(1234));
    assert_eq!(creator_pid("mpc-1234-0badf00d"), None);
    assert_eq!(creator_pid("mpc-x-0badf00d-h0"), None);
    assert_eq!(creator_pid("mpc-1234-nothex00-h0"), None);
    assert_eq!(creator_pid("other-1234-0badf00d-h0"), None);
}
