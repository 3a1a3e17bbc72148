//! `scripts/dev`, the README's run command, as a user runs it: it comes up
//! (nats-server, the bridge and the real `spin up`) to the line that says where
//! the web chat is, and a SIGTERM to the script alone (as a process manager
//! or `kill` sends it) stops all three, leaving their ports free.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use greentic_bridge::testing::free_port;
use spin_test_host::workspace_dir;

#[test]
fn dev_script_comes_up_and_a_sigterm_stops_everything_it_started() {
    let (app, bridge, nats) = (free_port(), free_port(), free_port());
    let mut dev = Command::new(workspace_dir().join("scripts/dev"));
    dev.env("GREENTIC_APP_LISTEN", format!("127.0.0.1:{app}"))
        .env("GREENTIC_BRIDGE_LISTEN", format!("127.0.0.1:{bridge}"))
        .env("GREENTIC_NATS_PORT", nats.to_string());
    // The bridge `cargo test --workspace` built for the bridge's own tests,
    // rather than a second build of it with other features (minutes on CI).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"));
    let built = target.join("debug/greentic-bridge");
    if built.is_file() {
        dev.env("GREENTIC_BRIDGE_BIN", built);
    }
    let mut dev = dev
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("scripts/dev runs");

    // Its stdout, line by line, until it says where to chat.
    let (lines, seen) = mpsc::channel();
    let stdout = dev.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut applied = Vec::new();
    let webchat_line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) if line.starts_with("web chat: ") => break line,
            // `greentic tenant apply bundles/demo.yaml`'s report.
            Ok(line) if line.starts_with("acme: ") || line.starts_with("bigcorp: ") => {
                applied.push(line)
            }
            Ok(_) => {}
            Err(_) => {
                let _ = dev.kill();
                panic!("scripts/dev never printed the web chat line (see its output above)");
            }
        }
    };
    // The demo's tenants were applied (created on a fresh store, or found
    // unchanged when .spin/ keeps them from an earlier run).
    assert_eq!(applied.len(), 2, "{applied:?}");
    assert!(
        applied
            .iter()
            .all(|l| l.ends_with("created (version 1)") || l.contains("unchanged")),
        "{applied:?}"
    );
    let url = webchat_line["web chat: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{app}/webchat?tenant=bigcorp")),
        "{webchat_line}"
    );
    let page = ureq::get(&url).call().expect("the web chat page answers");
    assert_eq!(page.status(), 200);
    for port in [app, bridge, nats] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "port {port} is served"
        );
    }

    // SIGTERM to the script's own process, not its group.
    let status = Command::new("kill")
        .args(["-TERM", &dev.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if dev.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "scripts/dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    for port in [app, bridge, nats] {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is still held after scripts/dev stopped"
        );
    }
}
