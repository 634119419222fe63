//! The run page (`--html`) from a real lab run: self-contained, small, one time line and one
//! strip per peer; the same page from `compare --logs --html`; and, where Debian's `chromium`
//! is installed, loaded by a headless browser without console errors, its DOM checked and a
//! screenshot taken.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{links, mpcomm, Proc, TempDir};

const PEERS: usize = 4;

fn lab_page(dir: &TempDir, extra: &[&str]) -> std::path::PathBuf {
    let page = dir.path().join("run.html");
    let mut c = mpcomm();
    c.args([
        "lab",
        "--peers",
        &PEERS.to_string(),
        "--msgs",
        "20",
        "--wan",
        "gcp8",
        "--time-scale",
        "0.05",
        "--transport",
        "fanout",
        "--interval",
        "1..3",
        "--drain",
        "300ms",
        "--json",
        "--log-dir",
    ])
    .arg(dir.path().join("logs"))
    .args(extra)
    .arg("--html")
    .arg(&page);
    let (status, _) = Proc::spawn(c).finish(Duration::from_secs(120));
    assert!(status.success(), "lab failed: {status}");
    page
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

fn check_page(html: &str, bytes: u64) {
    assert!(bytes <= 2 << 20, "page is {bytes} bytes, over 2 MB");
    for l in links(html) {
        assert!(
            !l.contains("http://") && !l.contains("https://"),
            "page links out: {l}"
        );
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert_eq!(count(html, "class=\"lane\""), PEERS, "time lines");
    assert_eq!(count(html, "class=\"strip\""), PEERS, "delivery strips");
    assert_eq!(
        count(html, "class=\"heat\""),
        2,
        "latency and disagreement heatmaps"
    );
    assert!(count(html, "class=\"a") > 0, "no arrows");
    assert!(html.contains("<polyline"), "no latency curves");
    assert!(html.contains("Found "), "no report text");
    // The time window: inputs inside the filter (hidden without scripts), the time scale on
    // the diagram for the script, and no arrow hidden in the markup itself.
    let filter = &html[html
        .find("<p id=\"filter\" hidden>")
        .expect("filter hidden")..];
    let filter = &filter[..filter.find("</p>").unwrap()];
    assert!(filter.contains("id=\"from\"") && filter.contains("id=\"to\""));
    assert!(html.contains("data-ms=\""), "no time scale for the window");
    assert!(
        !html.contains("display: none"),
        "arrows hidden without a script"
    );
}

#[test]
fn lab_page_is_self_contained_with_a_line_and_a_strip_per_peer() {
    let dir = TempDir::new("viz");
    let page = lab_page(&dir, &[]);
    let html = std::fs::read_to_string(&page).expect("the page was written");
    check_page(&html, std::fs::metadata(&page).unwrap().len());
    // No ordering: no arrival strips, no hold-back bars.
    assert_eq!(count(&html, "class=\"arrival-strip\""), 0);
    assert_eq!(count(&html, "class=\"hb\""), 0);

    // Offline: the same logs through `compare --logs --html`.
    let offline = dir.path().join("offline.html");
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let mut c = mpcomm();
    c.args(["compare", "--logs"])
        .args(&logs)
        .arg("--html")
        .arg(&offline);
    let (status, _) = Proc::spawn(c).finish(Duration::from_secs(60));
    assert!(status.success(), "compare failed: {status}");
    let html2 = std::fs::read_to_string(&offline).expect("compare wrote the page");
    check_page(&html2, std::fs::metadata(&offline).unwrap().len());

    render_in_chromium(&page, &dir);
}

#[test]
fn ordered_run_shows_arrival_beside_delivery() {
    let dir = TempDir::new("viz-seq");
    let page = lab_page(&dir, &["--order", "sequencer"]);
    let html = std::fs::read_to_string(&page).unwrap();
    check_page(&html, std::fs::metadata(&page).unwrap().len());
    assert_eq!(count(&html, "class=\"arrival-strip\""), PEERS);
    assert!(html.contains("Arrival order"));
}

/// Run chromium with `args`, killed after 60 s; (status ok, stdout, stderr).
fn chromium(args: &[&str]) -> (bool, String, String) {
    let child = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chromium");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || drop(tx.send(child.wait_with_output())));
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => {
            let out = out.expect("chromium output");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            // Ours alone, by its id.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("chromium did not finish within 60 s");
        }
    }
}

fn render_in_chromium(page: &Path, dir: &TempDir) {
    let found = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIP: chromium is not installed (Debian package `chromium`; .ci/run installs it)"
        );
        return;
    }
    let url = format!("file://{}", page.display());
    let (ok, dom, log) = chromium(&["--enable-logging=stderr", "--v=0", "--dump-dom", &url]);
    assert!(ok, "chromium --dump-dom failed: {log}");
    // Console messages (script errors, refused fetches) are logged as CONSOLE lines.
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    assert_eq!(
        count(&dom, "class=\"lane\""),
        PEERS,
        "time lines in the DOM"
    );
    assert_eq!(count(&dom, "class=\"strip\""), PEERS, "strips in the DOM");
    // The script ran: it shows the sender filter.
    assert!(
        dom.contains("<p id=\"filter\">"),
        "the filter script did not run"
    );

    // A time window from the address: the first millisecond only hides arrows, never all.
    let windowed = format!("{url}#t=0-1");
    let (ok, dom, log) = chromium(&["--enable-logging=stderr", "--v=0", "--dump-dom", &windowed]);
    assert!(ok, "chromium --dump-dom failed: {log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let arrows = count(&dom, "class=\"a");
    let hidden = count(&dom, "display: none");
    assert!(
        hidden > 0 && hidden < arrows,
        "{hidden} of {arrows} arrows hidden"
    );

    let shot = dir.path().join("shot.png");
    let arg = format!("--screenshot={}", shot.display());
    let (ok, _, log) = chromium(&[&arg, "--window-size=1400,1800", &url]);
    assert!(ok, "chromium --screenshot failed: {log}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
