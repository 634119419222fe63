//! The Debian package: `packaging/build-deb.sh` (cargo-deb) builds it from the binary under
//! test; then its contents and modes, control fields and maintainer scripts are checked, lintian
//! (where installed) must report no error, and the package is unpacked into a scratch root — the
//! machine is not touched — where the installed units pass `systemd-analyze verify --root`, the
//! installed binary runs and the man pages render. Skipped, saying why, without cargo-deb or
//! dpkg-deb, or in a debug build (cargo-deb packages the release binary). The man pages and
//! completions themselves are checked in every build.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNITS: [&str; 2] = ["mpcomm-agent.service", "mpcomm-c2.service"];

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Removed on drop, so also when an assertion fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "mpcomm-{what}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd`, logs what it printed, returns (success, stdout, stderr).
fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: cannot start: {e}"));
    let (out, err) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    // The start of what it printed (--help texts and file lists are long).
    let shown: Vec<&str> = out.lines().chain(err.lines()).take(12).collect();
    eprintln!("$ {cmd:?}: {status}\n{}", shown.join("\n"));
    (status.success(), out, err)
}

fn ok(cmd: &mut Command) -> String {
    let (success, out, err) = run(cmd);
    assert!(success, "{cmd:?} failed:\n{out}{err}");
    out
}

/// The subcommands that get a page, as page names (mpcomm-c2-agent), from `--help` output.
fn visible_subcommands(prefix: &[&str]) -> Vec<String> {
    let help = ok(Command::new(env!("CARGO_BIN_EXE_mpcomm"))
        .args(prefix)
        .arg("--help"));
    let mut names = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
        } else if in_commands {
            // "  name  about"; a long about goes on over lines indented deeper.
            if line.starts_with("   ") {
                continue;
            }
            match line.split_whitespace().next() {
                Some("help") => {}
                Some(name) if line.starts_with("  ") => {
                    let mut sub: Vec<&str> = prefix.to_vec();
                    sub.push(name);
                    names.push(format!("mpcomm-{}", sub.join("-")));
                    names.extend(visible_subcommands(&sub));
                }
                _ => in_commands = false,
            }
        }
    }
    names
}

#[test]
fn generate_writes_a_page_per_command_and_three_completions() {
    let tmp = TempDir::new("generate");
    let bin = env!("CARGO_BIN_EXE_mpcomm");
    ok(Command::new(bin)
        .arg("generate")
        .arg("man")
        .arg(tmp.0.join("man")));
    ok(Command::new(bin)
        .args(["generate", "completions"])
        .arg(tmp.0.join("comp")));

    let mut want: Vec<String> = visible_subcommands(&[]);
    want.push("mpcomm".into());
    want.iter_mut().for_each(|n| n.push_str(".1"));
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(tmp.0.join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got, want,
        "one page per visible command, none for `generate`"
    );

    let page = |name: &str| std::fs::read_to_string(tmp.0.join("man").join(name)).unwrap();
    let agent = page("mpcomm-c2-agent.1");
    assert!(
        agent.starts_with(".ie") && agent.contains(".TH mpcomm-c2-agent 1"),
        "{agent}"
    );
    assert!(
        agent.contains(&format!("\"mpcomm {}\"", env!("CARGO_PKG_VERSION"))),
        "{agent}"
    );
    // The same command main parses: with_exit_codes added the exit codes.
    assert!(
        agent.contains("Exit codes: 0 stopped by the controller"),
        "{agent}"
    );
    assert!(page("mpcomm.1").contains("mpcomm\\-lab(1)"));

    for (file, marker) in [
        ("mpcomm.bash", "complete -F _mpcomm"),
        ("_mpcomm", "#compdef mpcomm"),
        ("mpcomm.fish", "complete -c mpcomm"),
    ] {
        let text = std::fs::read_to_string(tmp.0.join("comp").join(file)).unwrap();
        assert!(text.contains(marker), "{file}: no {marker:?}");
        assert!(text.contains("agent"), "{file}: no c2 agent");
    }
    if on_path("bash").is_some() {
        let script = tmp.0.join("comp/mpcomm.bash");
        let out = ok(Command::new("bash")
            .arg("-c")
            .arg("source \"$1\" && complete -p mpcomm")
            .arg("bash")
            .arg(&script));
        assert!(out.contains("_mpcomm mpcomm"), "{out}");
    }
    let one = ok(Command::new(bin).args(["generate", "completion", "zsh"]));
    assert!(one.starts_with("#compdef mpcomm"), "{one}");
}

/// The package's file list: (mode, path) for every entry, owner checked to be root.
fn contents(deb: &Path) -> Vec<(String, String)> {
    let list = ok(Command::new("dpkg-deb").arg("-c").arg(deb));
    list.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(
                f[1] == "0/0" || f[1] == "root/root",
                "not owned by root: {l}"
            );
            let path = f[5]
                .trim_start_matches('.')
                .trim_end_matches('/')
                .to_string();
            (f[0].to_string(), path)
        })
        .collect()
}

#[test]
fn deb_installs_into_a_scratch_root_with_units_that_verify() {
    // As build-deb.sh calls it: cargo finds cargo-deb in $CARGO_HOME/bin even off the PATH.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cargo_deb = Command::new(&cargo).args(["deb", "--version"]).output();
    let Some(cargo_deb) = cargo_deb.ok().filter(|o| o.status.success()) else {
        eprintln!("SKIPPED: cargo-deb not found (cargo install --locked cargo-deb; .ci/run does)");
        return;
    };
    if on_path("dpkg-deb").is_none() {
        eprintln!("SKIPPED: dpkg-deb not found (Debian tooling unpacks the package)");
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_mpcomm"));
    if bin.parent().and_then(Path::file_name) != Some("release".as_ref()) {
        eprintln!(
            "SKIPPED: debug build (cargo-deb packages the release binary: cargo test --release)"
        );
        return;
    }
    eprintln!("{}", String::from_utf8_lossy(&cargo_deb.stdout).trim());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = TempDir::new("deb");
    let out_dir = tmp.0.join("out");
    std::fs::create_dir(&out_dir).unwrap();

    // The binary under test is the release binary: no second cargo build inside cargo test.
    let built = ok(Command::new(root.join("packaging/build-deb.sh"))
        .env("MPCOMM_DEB_NO_BUILD", "1")
        .arg("--fast")
        .arg("--output")
        .arg(&out_dir));
    let deb = PathBuf::from(built.lines().last().unwrap_or_default().trim());
    assert!(
        deb.starts_with(&out_dir) && deb.extension() == Some("deb".as_ref()),
        "{deb:?}"
    );

    // Contents and modes: nothing but root-owned 755 dirs, 644 files and the 755 binary.
    let list = contents(&deb);
    let mut want = vec![
        ("-rwxr-xr-x", "/usr/bin/mpcomm".to_string()),
        ("-rw-r--r--", "/usr/share/doc/mpcomm/README.md".into()),
        ("-rw-r--r--", "/usr/share/doc/mpcomm/copyright".into()),
        (
            "-rw-r--r--",
            "/usr/share/doc/mpcomm/changelog.Debian.gz".into(),
        ),
        (
            "-rw-r--r--",
            "/usr/share/doc/mpcomm/examples/agent.env".into(),
        ),
        ("-rw-r--r--", "/usr/share/doc/mpcomm/examples/c2.env".into()),
        ("-rw-r--r--", "/usr/share/man/man1/mpcomm.1.gz".into()),
        (
            "-rw-r--r--",
            "/usr/share/man/man1/mpcomm-c2-agent.1.gz".into(),
        ),
        (
            "-rw-r--r--",
            "/usr/share/man/man1/mpcomm-c2-serve.1.gz".into(),
        ),
        (
            "-rw-r--r--",
            "/usr/share/bash-completion/completions/mpcomm".into(),
        ),
        (
            "-rw-r--r--",
            "/usr/share/zsh/vendor-completions/_mpcomm".into(),
        ),
        (
            "-rw-r--r--",
            "/usr/share/fish/vendor_completions.d/mpcomm.fish".into(),
        ),
        ("-rw-r--r--", "/usr/share/lintian/overrides/mpcomm".into()),
    ];
    for u in UNITS {
        want.push(("-rw-r--r--", format!("/usr/lib/systemd/system/{u}")));
    }
    for (mode, path) in &want {
        assert!(
            list.iter().any(|(m, p)| m == mode && p == path),
            "{mode} {path} not in {list:#?}"
        );
    }
    for (mode, path) in &list {
        assert!(
            mode == "drwxr-xr-x" || mode == "-rw-r--r--" || path == "/usr/bin/mpcomm",
            "{mode} {path}"
        );
    }
    let pages = list
        .iter()
        .filter(|(_, p)| p.starts_with("/usr/share/man/man1/"))
        .count();
    assert_eq!(pages, visible_subcommands(&[]).len() + 1, "{list:#?}");

    // Control fields: a versioned libc6 from $auto, iproute2 recommended.
    let field = |name: &str| {
        ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name))
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "mpcomm");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    assert_eq!(
        field("Architecture"),
        ok(Command::new("dpkg").arg("--print-architecture")).trim()
    );
    let depends = field("Depends");
    let libc = regex::Regex::new(r"(^|, )libc6 \(>= [0-9][0-9.]*\)").unwrap();
    assert!(libc.is_match(&depends), "Depends: {depends}");
    assert_eq!(field("Recommends"), "iproute2");

    // Maintainer scripts: /etc/mpcomm made, units neither enabled nor started on install; an
    // upgrade only try-restarts running ones; removal stops them.
    let ctl = tmp.0.join("control");
    ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctl));
    let script = |name: &str| std::fs::read_to_string(ctl.join(name)).unwrap();
    let postinst = script("postinst");
    assert!(
        postinst.contains("install -d -m 700 /etc/mpcomm"),
        "{postinst}"
    );
    for u in UNITS {
        assert!(
            postinst.contains(&format!("if deb-systemd-helper debian-installed {u}; then")),
            "{u}: postinst should enable only what the admin had enabled:\n{postinst}"
        );
        assert!(
            postinst.contains(&format!("deb-systemd-invoke try-restart {u}")),
            "{postinst}"
        );
        assert!(
            script("prerm").contains(&format!("deb-systemd-invoke stop {u}")),
            "{u}"
        );
    }
    for line in postinst
        .lines()
        .filter(|l| l.contains("deb-systemd-invoke"))
    {
        assert!(
            line.contains("try-restart"),
            "postinst starts a unit: {line}"
        );
    }
    assert!(
        !postinst.contains("was-enabled defaults to true"),
        "{postinst}"
    );

    // lintian: no errors (warnings are printed).
    if on_path("lintian").is_some() {
        let (_, out, err) = run(Command::new("lintian")
            .arg("--fail-on")
            .arg("error")
            .arg(&deb));
        let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("E:")).collect();
        assert!(errors.is_empty(), "lintian errors:\n{out}{err}");
        assert!(!err.contains("E:"), "{err}");
    } else {
        eprintln!("lintian not installed: not run (.ci/run installs it)");
    }

    // Unpacked into a scratch root: the machine's own /usr and dpkg database stay untouched.
    let sysroot = tmp.0.join("root");
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&sysroot));
    for u in UNITS {
        let installed = std::fs::read(sysroot.join("usr/lib/systemd/system").join(u)).unwrap();
        assert_eq!(
            installed,
            std::fs::read(root.join("systemd").join(u)).unwrap(),
            "{u} as in systemd/"
        );
    }
    for (example, src) in [
        ("agent.env", "agent.env.example"),
        ("c2.env", "c2.env.example"),
    ] {
        assert_eq!(
            std::fs::read(sysroot.join("usr/share/doc/mpcomm/examples").join(example)).unwrap(),
            std::fs::read(root.join("systemd").join(src)).unwrap()
        );
    }
    let installed_bin = sysroot.join("usr/bin/mpcomm");
    assert_stripped(&installed_bin);
    let size = std::fs::metadata(&installed_bin).unwrap().len();
    eprintln!(
        "MEASURED package {} bytes, installed binary {size} bytes (built: {})",
        std::fs::metadata(&deb).unwrap().len(),
        std::fs::metadata(bin).unwrap().len()
    );
    let version = ok(Command::new(&installed_bin).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("mpcomm {}", env!("CARGO_PKG_VERSION"))
    );

    check_man_pages(&sysroot.join("usr/share/man/man1"));
    verify_units(&sysroot);
}

/// No symbol table and no .debug_* sections (readelf; `.debug_gdb_scripts` is not debug info
/// but a loaded section naming rustc's pretty-printers), or `file` says stripped.
fn assert_stripped(bin: &Path) {
    if on_path("readelf").is_some() {
        let sections = ok(Command::new("readelf").arg("-SW").arg(bin));
        let names: Vec<&str> = sections
            .lines()
            .filter_map(|l| l.split(']').nth(1)?.split_whitespace().next())
            .collect();
        assert!(names.contains(&".text"), "{sections}");
        let left: Vec<&&str> = names
            .iter()
            .filter(|n| {
                *n == &".symtab" || (n.starts_with(".debug_") && *n != &".debug_gdb_scripts")
            })
            .collect();
        assert!(left.is_empty(), "not stripped: {left:?}\n{sections}");
    } else if on_path("file").is_some() {
        let out = ok(Command::new("file").arg(bin));
        assert!(out.contains(", stripped"), "{out}");
    } else {
        eprintln!("neither readelf nor file installed: strip not checked");
    }
}

/// Every page renders with `man -l` (or groff), says NAME and gives its exit codes where main
/// has them. groff's line-filling warnings about long words are tolerated, nothing else.
fn check_man_pages(dir: &Path) {
    let tolerated = |l: &str| {
        l.trim().is_empty() || l.contains("cannot adjust line") || l.contains("can't break line")
    };
    let tool = if on_path("man").is_some() {
        "man"
    } else if on_path("groff").is_some() && on_path("gzip").is_some() {
        "groff"
    } else {
        eprintln!("neither man nor groff installed: man pages not rendered");
        return;
    };
    let render = |page: &Path| {
        if tool == "man" {
            return run(Command::new("man")
                .arg("--warnings")
                .arg("-l")
                .arg(page)
                .env("MANWIDTH", "100")
                .env("MAN_DISABLE_SECCOMP", "1"));
        }
        // groff reads no gzip: unpack next to the page (the scratch root goes away).
        let roff = page.with_extension("");
        std::fs::write(&roff, ok(Command::new("gzip").arg("-dc").arg(page))).unwrap();
        let r = run(Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-P-cbou"]) // -P: plain text, no overstrikes
            .arg(&roff));
        std::fs::remove_file(&roff).unwrap();
        r
    };
    let pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for page in pages {
        let (success, text, err) = render(&page);
        assert!(success, "{tool} {page:?}: {err}");
        let bad: Vec<&str> = err.lines().filter(|l| !tolerated(l)).collect();
        assert!(bad.is_empty(), "{tool} {page:?}:\n{err}");
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{page:?}:\n{text}"
        );
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        if name == "mpcomm-c2-agent.1.gz" {
            // Rendering fills lines: compare words.
            let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                words.contains("Exit codes: 0 stopped by the controller"),
                "{text}"
            );
        }
    }
}

/// `systemd-analyze verify --root` on the installed units. The scratch root gets the host's
/// own units (sysinit.target, network-online.target, …) beside the package's; ExecStart's
/// /usr/bin/mpcomm resolves inside the root, so the packaged binary is the one checked —
/// removing it must make verify fail.
fn verify_units(sysroot: &Path) {
    let Some(sa) = on_path("systemd-analyze") else {
        eprintln!("systemd-analyze not installed: units not verified (install systemd)");
        return;
    };
    let host_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|d| d.join("sysinit.target").exists())
        .expect("systemd-analyze without the host's sysinit.target");
    let units_dir = sysroot.join("usr/lib/systemd/system");
    ok(Command::new("cp")
        .arg("-a")
        .arg("--no-clobber")
        .arg(format!("{}/.", host_units.display()))
        .arg(&units_dir));
    let verify = |u: &str| {
        run(Command::new(&sa)
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", sysroot.display()))
            .arg(units_dir.join(u)))
    };
    for u in UNITS {
        let (success, out, err) = verify(u);
        assert!(success, "{u}: {out}{err}");
        let text = format!("{out}{err}");
        assert!(
            text.trim().is_empty(),
            "{u}: systemd-analyze verify printed warnings:\n{text}"
        );
    }
    let bin = sysroot.join("usr/bin/mpcomm");
    let moved = sysroot.join("usr/bin/mpcomm.moved");
    std::fs::rename(&bin, &moved).unwrap();
    let (success, out, err) = verify(UNITS[0]);
    std::fs::rename(&moved, &bin).unwrap();
    assert!(
        !success && format!("{out}{err}").contains("/usr/bin/mpcomm"),
        "verify should check the packaged binary: {out}{err}"
    );
}
