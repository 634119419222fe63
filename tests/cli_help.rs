//! Every command's `--help` says what its exit status means.

mod support;

#[test]
fn every_command_documents_its_exit_codes() {
    let commands: &[&[&str]] = &[
        &["lab"],
        &["peer"],
        &["compare"],
        &["report"],
        &["upload"],
        &["log", "dump"],
        &["log", "export"],
        &["c2", "keygen"],
        &["c2", "agent"],
        &["c2", "serve"],
        &["c2", "run"],
        &["c2", "status"],
        &["c2", "exit"],
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
