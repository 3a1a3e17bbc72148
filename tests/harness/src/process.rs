//! Servers a test process starts once and keeps (redis-server, nats-server,
//! `spin up`): each is held by a shell that stops it, and removes its scratch
//! folder, when our end of the shell's stdin closes. That happens however the
//! test process ends, so nothing is left running or holding a port, even when
//! the server lives in a `static` that is never dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Tied {
    pid: u32,
    log: PathBuf,
    _guard: Mutex<(Child, ChildStdin)>,
}

/// Starts `program` with `args` and `env`, its output in `log`, stopped (and
/// `scratch` removed, if given) when this process ends.
pub fn spawn_tied(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
    scratch: Option<&Path>,
) -> Tied {
    // $1 = log, $2 = scratch folder (or ""), the rest = the command.
    let script = r#"log=$1; scratch=$2; shift 2
"$@" </dev/null >"$log" 2>&1 &
server=$!
echo "$server"
read _ignored
kill "$server" 2>/dev/null
wait "$server" 2>/dev/null
[ -n "$scratch" ] && rm -rf "$scratch"
exit 0"#;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(log)
        .arg(scratch.map(Path::as_os_str).unwrap_or_default())
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first_line,
    )
    .unwrap();
    let pid = first_line.trim().parse().expect("the shell prints the pid");
    let stdin = child.stdin.take().unwrap();
    Tied {
        pid,
        log: log.to_owned(),
        _guard: Mutex::new((child, stdin)),
    }
}

impl Tied {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the server wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the server is still running.
    pub fn running(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// Waits until `ready()` holds, or fails with the server's output.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready() {
            if !self.running() || Instant::now() > deadline {
                panic!(
                    "{what} did not come up; its output ({}):\n{}",
                    self.log.display(),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
