//! The main job: the demo writes profiles that `go tool pprof` reads, with
//! the demo's real function names in them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use lowprof_tests::pprof_tool::{pprof, require_go};

#[test]
fn demo_profiles_read_back_with_go_tool_pprof() {
    let Some(go) = require_go() else { return };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The README's main-job command, run for two seconds, writing into a
    // scratch dir. Cargo reads `.cargo/config.toml` (frame pointers!) from
    // the current directory, so run it from the workspace.
    let out = Command::new(env!("CARGO"))
        .args(["run", "--release", "-q", "-p", "lowprof", "--example", "demo", "--"])
        .arg("2")
        .arg(dir.path().join("profiles"))
        .current_dir(workspace)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("demo::remember_sessions"),
        "the growing cache is a top site:\n{stdout}"
    );
    for file in ["heap.pb.gz", "heap.svg", "allocs.svg", "cpu.pb.gz", "cpu.svg"] {
        let path = dir.path().join("profiles").join(file);
        assert!(
            path.metadata().is_ok_and(|m| m.len() > 100),
            "{} missing or empty",
            path.display()
        );
    }
    let heap = dir.path().join("profiles/heap.pb.gz");
    let heap = heap.to_str().unwrap();
    let top = pprof(&go, &["-top", "-nodecount=200", heap]);
    assert!(
        top.contains("demo::remember_sessions"),
        "in-use top lists the demo's functions:\n{top}"
    );
    let allocs = pprof(&go, &["-top", "-nodecount=200", "-sample_index=alloc_space", heap]);
    for f in
        ["demo::parse_log", "demo::generate_log", "demo::index_by_path", "demo::aggregate_users"]
    {
        assert!(allocs.contains(f), "alloc_space top lists {f}:\n{allocs}");
    }
    let cpu = dir.path().join("profiles/cpu.pb.gz");
    let cpu_top = pprof(&go, &["-top", "-nodecount=200", cpu.to_str().unwrap()]);
    assert!(
        cpu_top.contains("demo::checksum") || cpu_top.contains("demo::aggregate_users"),
        "{cpu_top}"
    );
}
