//! Key files: the relaxed permission check for systemd credentials applies only to files that
//! really lie in `$CREDENTIALS_DIRECTORY`, not to paths that merely start with it textually.

mod c2_common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use c2_common::{run_to_end, write_key, TempDir, EXE};

/// `c2 status` against a port nobody listens on: the key check comes first, so the error says
/// whether the key was accepted ("cannot connect") or refused ("readable by group").
fn status_with(key: &std::path::Path, creds: &std::path::Path) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(EXE);
    cmd.args(["c2", "status", "--controller", &format!("127.0.0.1:{port}")])
        .arg("--key-file")
        .arg(key)
        .env("CREDENTIALS_DIRECTORY", creds);
    let (status, _, err) = run_to_end(cmd, Duration::from_secs(30));
    assert!(!status.success());
    err
}

#[test]
fn credentials_exception_needs_the_real_directory() {
    let dir = TempDir::new("c2-key");
    let creds = dir.path("creds");
    std::fs::create_dir_all(&creds).unwrap();
    let group_readable = |p: &std::path::Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o640)).unwrap()
    };

    // A group-readable key inside the credentials directory (as LoadCredential= makes it): ok.
    let inside = write_key(&dir, "creds/c2.key");
    group_readable(&inside);
    let err = status_with(&inside, &creds);
    assert!(err.contains("cannot connect"), "{err}");

    // The same mode outside, reached through `$CREDENTIALS_DIRECTORY/..`: refused.
    let outside = write_key(&dir, "elsewhere.key");
    group_readable(&outside);
    let err = status_with(&creds.join("..").join("elsewhere.key"), &creds);
    assert!(
        err.contains("readable by group or others"),
        "a key outside the credentials directory passed the relaxed check: {err}"
    );

    // A symlink in the credentials directory pointing out of it: refused too.
    std::os::unix::fs::symlink(&outside, creds.join("link.key")).unwrap();
    let err = status_with(&creds.join("link.key"), &creds);
    assert!(err.contains("readable by group or others"), "{err}");

    // And outside with no credentials directory at all, as before.
    let err = status_with(&outside, &dir.path("nonexistent"));
    assert!(err.contains("readable by group or others"), "{err}");
}
