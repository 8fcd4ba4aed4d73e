//! The Python OTLP receiver (`tests/receiver/otlp_receiver.py`, decoding with
//! the `opentelemetry-proto` package) as a child process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
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

/// A TCP port on 127.0.0.1 that is bound but not listening: connections to
/// it are refused, and no other socket can take the port meanwhile (a port
/// found free and released could be handed to a parallel test's listener).
pub struct ReservedPort {
    socket: OwnedFd,
    /// The port.
    pub port: u16,
}

impl ReservedPort {
    /// Binds a fresh socket to 127.0.0.1 on a port the kernel picks.
    pub fn new() -> ReservedPort {
        // SAFETY: socket(2) takes three integers; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes([127, 0, 0, 1]) },
            sin_zero: [0; 8],
        };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_in of `len` bytes.
        let rc = unsafe { libc::bind(fd, (&raw const addr).cast(), len) };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        // SAFETY: `addr` has room for `len` bytes; the kernel writes the address.
        let rc = unsafe { libc::getsockname(fd, (&raw mut addr).cast(), &mut len) };
        assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
        ReservedPort { socket, port: u16::from_be(addr.sin_port) }
    }
}

impl Receiver {
    /// Starts a receiver on `port` (0: any) answering by `script` (JSON list).
    pub fn start(port: u16, script: Option<&str>) -> Receiver {
        Self::spawn(&["--port", &port.to_string()], None, script)
    }

    /// Starts a receiver that listens on `reserved`'s socket, so the port
    /// goes from refusing connections to accepting them with no moment in
    /// which another socket could take it.
    pub fn start_on(reserved: ReservedPort, script: Option<&str>) -> Receiver {
        let fd = reserved.socket.as_raw_fd();
        Self::spawn(&["--fd", &fd.to_string()], Some(reserved.socket), script)
    }

    fn spawn(listen: &[&str], socket: Option<OwnedFd>, script: Option<&str>) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(workspace.join("tests/receiver/otlp_receiver.py"))
            .args(listen)
            .arg("--out")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(fd) = socket.as_ref().map(AsRawFd::as_raw_fd) {
            // SAFETY: the closure only calls fcntl(2), which is
            // async-signal-safe, on a descriptor the parent keeps open
            // until after the spawn.
            unsafe {
                cmd.pre_exec(move || {
                    // The child inherits the socket (no other child does).
                    if libc::fcntl(fd, libc::F_SETFD, 0) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        if let Some(script) = script {
            let path = dir.path().join("script.json");
            std::fs::write(&path, script).unwrap();
            cmd.arg("--script").arg(path);
        }
        let mut child = cmd.spawn().expect("start the OTLP receiver");
        // The child has its own copy of the socket now.
        drop(socket);
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
