use super::*;

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn who_am_i_finds_the_one_local_address() {
    // Documentation ranges that are not an address of this host (checked, not assumed:
    // some sandboxes use TEST-NET addresses). Nothing is sent to them.
    let local: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter_map(|i| {
            i.address
                .and_then(|a| a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
        })
        .collect();
    let foreign: Vec<String> = [
        "192.0.2.77",
        "198.51.100.77",
        "203.0.113.77",
        "198.51.100.78",
    ]
    .iter()
    .filter(|ip| !local.contains(&ip.parse().unwrap()))
    .map(|ip| format!("{ip}:5000"))
    .collect();
    assert!(
        foreign.len() >= 2,
        "this host owns the documentation ranges?"
    );
    let (f0, f1) = (foreign[0].as_str(), foreign[1].as_str());
    assert_eq!(who_am_i(&addrs(&[f0, "127.0.0.1:5000", f1])).unwrap(), 1);
    let none = who_am_i(&addrs(&[f0, f1])).unwrap_err();
    assert!(none.to_string().contains("pass --id"), "{none}");
    let many = who_am_i(&addrs(&["127.0.0.1:5000", "127.0.0.1:5001"])).unwrap_err();
    assert!(
        many.to_string()
            .contains("2 of the --peers addresses are on this host"),
        "{many}"
    );
}

#[test]
fn comparator_addresses_need_a_port() {
    assert!(parse_comparator("127.0.0.1:4568").is_ok());
    assert!(parse_comparator("cmp.example:4568").is_ok());
    assert!(parse_comparator("[::1]:4568").is_ok());
    assert!(parse_comparator("127.0.0.1")
        .unwrap_err()
        .contains("no port"));
    assert!(parse_comparator("::1").is_err());
    assert!(parse_comparator(":4568").is_err());
    assert!(parse_comparator("h:0").is_err());
    assert!(parse_comparator("h:http").is_err());
}

#[test]
fn run_ids_parse_in_decimal_and_hex_and_zero_is_refused() {
    assert_eq!(parse_run_id("42"), Ok(42));
    assert_eq!(parse_run_id("0x2a"), Ok(42));
    assert!(parse_run_id("0").is_err());
    assert!(parse_run_id("x").is_err());
}
