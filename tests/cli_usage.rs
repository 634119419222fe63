//! A value refused after parsing is a usage error like any clap refuses: exit status 2, the
//! message, the subcommand's usage line. What is not about the arguments stays exit 1.

mod support;

use support::mpcomm;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = mpcomm().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn values_refused_after_parsing_are_usage_errors_of_their_subcommand() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["peer", "--peers", "127.0.0.1:1,127.0.0.1:2", "--id", "5"],
            "--id 5 is out of range",
            "Usage: mpcomm peer",
        ),
        (
            &["peer", "--peers", "127.0.0.1:1", "--msgs", "0"],
            "--msgs must be at least 1",
            "Usage: mpcomm peer",
        ),
        (
            &["lab", "--peers", "0"],
            "--peers must be 1..=256",
            "Usage: mpcomm lab",
        ),
        (
            &["lab", "--wan", "lan", "--wan-loss", "1.5"],
            "--wan-loss 1.5: the loss must be",
            "Usage: mpcomm lab",
        ),
        (
            &["bench", "--rate", "0"],
            "--rate must be 1..=1000000",
            "Usage: mpcomm bench",
        ),
        (
            &[
                "c2",
                "run",
                "--controller",
                "127.0.0.1:1",
                "--key-file",
                "/nonexistent",
                "--peers",
                "2",
                "--msgs",
                "0",
            ],
            "--msgs must be",
            "Usage: mpcomm c2 run",
        ),
    ];
    for &(args, message, usage) in cases {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: clap's format: {err}");
        assert!(
            err.contains(message) && err.contains(usage),
            "{args:?}: {err}"
        );
        assert!(!err.contains("mpcomm: error"), "{args:?}: {err}");
    }
}

#[test]
fn errors_about_this_host_stay_exit_1() {
    let (code, err) = run(&[
        "peer",
        "--peers",
        "127.0.0.1:1",
        "--run-key-file",
        "/nonexistent/key",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("mpcomm: error: --run-key-file"), "{err}");
}
