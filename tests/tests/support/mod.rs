//! The Python OTLP receiver (`tests/receiver/otlp_receiver.py`, decoding with
//! the `opentelemetry-proto` package) as a child process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Whether python3 can import the OTLP bindings; panics under `CI` if not.
pub fn require_python() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("python3 with opentelemetry-proto==1.45.* is required (.ci/run installs it)");
        }
        eprintln!("SKIPPED: python3 -m pip install 'opentelemetry-proto==1.45.*' to run this test");
    }
    ok
}

/// A running receiver; killed on drop.
pub struct Receiver {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Where it writes `requests.jsonl`.
    pub dir: tempfile::TempDir,
}

impl Receiver {
    /// Starts a receiver on `port` (0: any) answering by `script` (JSON list).
    pub fn start(port: u16, script: Option<&str>) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(workspace.join("tests/receiver/otlp_receiver.py"))
            .args(["--port", &port.to_string(), "--out"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(script) = script {
            let path = dir.path().join("script.json");
            std::fs::write(&path, script).unwrap();
            cmd.arg("--script").arg(path);
        }
        let mut child = cmd.spawn().expect("start the OTLP receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port =
            line.trim().strip_prefix("LISTENING ").and_then(|p| p.parse().ok()).unwrap_or_else(
                || {
                    panic!("receiver did not start: {line:?}");
                },
            );
        Receiver { child, port, dir }
    }

    /// The base URL to export to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request it received, in order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let path: PathBuf = self.dir.path().join("requests.jsonl");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a test binary, asserting success; returns stdout.
pub fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("run test binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin} {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A `key=value` line of a test binary's output.
pub use lowprof_tests::stat;
