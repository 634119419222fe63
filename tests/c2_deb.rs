//! `systemd/build-deb.sh` makes an installable package: the built binary, both units exactly as
//! in systemd/, the example settings and the C2 docs, with sane ownership and modes. Skipped,
//! saying why, without dpkg-deb.

use std::path::Path;
use std::process::Command;

#[test]
fn deb_holds_binary_units_and_docs() {
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        eprintln!("SKIPPED: dpkg-deb not found (Debian tooling builds the package)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!(
        "mpcomm-deb-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    struct Rm<'a>(&'a Path);
    impl Drop for Rm<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
    let _rm = Rm(&out);
    let built = Command::new(root.join("systemd/build-deb.sh"))
        .arg(env!("CARGO_BIN_EXE_mpcomm"))
        .arg(&out)
        .env("MPCOMM_DEB_COMPRESS", "gzip")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8(built.stdout).unwrap().trim().to_string();
    assert!(deb.ends_with(".deb"), "{deb}");

    let list = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for (mode, path) in [
        ("drwxr-xr-x root/root", "./"),
        ("-rwxr-xr-x root/root", "./usr/bin/mpcomm"),
        (
            "-rw-r--r-- root/root",
            "./lib/systemd/system/mpcomm-agent.service",
        ),
        (
            "-rw-r--r-- root/root",
            "./lib/systemd/system/mpcomm-c2.service",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/doc/mpcomm/examples/agent.env",
        ),
        ("-rw-r--r-- root/root", "./usr/share/doc/mpcomm/README.md"),
    ] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(mode) && l.ends_with(&format!(" {path}"))),
            "{mode} {path} in:\n{list}"
        );
    }
    let fields = Command::new("dpkg-deb")
        .args(["-f", &deb, "Package", "Version"])
        .output()
        .unwrap();
    let fields = String::from_utf8_lossy(&fields.stdout);
    assert!(
        fields.contains("Package: mpcomm")
            && fields.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{fields}"
    );

    let x = out.join("x");
    assert!(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&x)
        .status()
        .unwrap()
        .success());
    for u in ["mpcomm-agent.service", "mpcomm-c2.service"] {
        let packaged = std::fs::read(x.join("lib/systemd/system").join(u)).unwrap();
        assert_eq!(
            packaged,
            std::fs::read(root.join("systemd").join(u)).unwrap(),
            "{u}"
        );
    }
    let bin = std::fs::read(x.join("usr/bin/mpcomm")).unwrap();
    assert_eq!(
        bin.len() as u64,
        std::fs::metadata(env!("CARGO_BIN_EXE_mpcomm"))
            .unwrap()
            .len()
    );
}
