//! Every command's `--help` says what its exit status means.

mod support;

#[test]
fn every_command_documents_its_exit_codes() {
    let commands: &[&[&str]] = &[
        &["lab"],
        &["peer"],
        &["check"],
        &["compare"],
        &["report"],
        &["upload"],
        &["log", "dump"],
        &["log", "export"],
        &["wan", "list"],
        &["wan", "show"],
        &["c2", "keygen"],
        &["c2", "agent"],
        &["c2", "serve"],
        &["c2", "run"],
        &["c2", "status"],
        &["c2", "exit"],
        &["c2", "check"],
    ];
    for cmd in commands {
        let out = support::mpcomm().args(*cmd).arg("--help").output().unwrap();
        assert!(out.status.success(), "{cmd:?} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Exit codes: 0 "),
            "{cmd:?} --help has no exit codes:\n{text}"
        );
    }
}

#[test]
fn wan_profiles_are_listed_and_a_shown_one_loads_back() {
    let out = support::mpcomm()
        .args(["wan", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["lan", "gcp8"]);
    let dir = support::TempDir::new("wan-show");
    let shown = support::mpcomm()
        .args(["wan", "show", "gcp8"])
        .output()
        .unwrap();
    assert!(shown.status.success());
    let file = dir.path().join("mine.wan");
    std::fs::write(&file, &shown.stdout).unwrap();
    let again = support::mpcomm()
        .args(["wan", "show"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("gcp8 (8 zones"));
    let bad = support::mpcomm()
        .args(["wan", "show", "no-such-profile"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown WAN profile"));
}

/// `c2 status` pointed at the comparator's port says so, instead of "bad frame: bad length".
#[test]
fn c2_status_at_the_comparators_port_says_which_port_it_is() {
    let dir = support::TempDir::new("c2-wrong-port");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmp = support::mpcomm();
    cmp.args(["compare", "--listen", &addr]);
    let _cmp = support::Proc::spawn(cmp);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the comparator did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let key = dir.path().join("key");
    let made = support::mpcomm().args(["c2", "keygen"]).output().unwrap();
    std::fs::write(&key, &made.stdout).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = support::mpcomm()
        .args(["c2", "status", "--controller", &addr, "--key-file"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is it the comparator's port"), "{err}");
}
