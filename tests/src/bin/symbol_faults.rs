//! Symbolization faults: code the symbolizer cannot name, or that is gone by
//! the time the profile is built. The process must not crash, and the
//! profile must keep every sampled address.
//!
//! Usage:
//!
//! - `symbol_faults burn <dir>`: CPU in `fault_burn_rust` for 0.6 s and a
//!   few sampled heap blocks; writes `cpu.pb.gz` and `heap.pb.gz`. Run on a
//!   stripped copy of this binary.
//! - `symbol_faults dlopen <dir> <lib.so> keep|close|close-warm|close-delete`:
//!   starts the profiler at 999 Hz, then `dlopen`s `lib.so`
//!   (tests/fixtures/fault_lib.c), allocates 16 × 2 MiB from a callback
//!   called by the library (so heap stacks pass through its frames) and burns
//!   1 s of CPU inside it. With `close` the library is `dlclose`d before any
//!   profile is built; with `close-warm` a first pair of profiles
//!   (`cpu-warm.pb.gz`, `heap-warm.pb.gz`) is built half-way while it is
//!   loaded; with `close-delete` its file is also deleted after `dlclose`.
//!   Then writes `cpu.pb.gz` and `heap.pb.gz`.
//!
//! Prints `exe_build_id=<hex>` (burn) or `lib_text=<start>-<end>` (hex, the
//! library's executable mapping) and `lib_build_id=<hex>` (as
//! `lowprof::maps` reads them while loaded), `unloaded=<0|1>` (whether the
//! library is gone from `/proc/self/maps` when the final profiles are built)
//! and `ok`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::{CString, c_void};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lowprof::SampledAlloc;
use lowprof_tests::cpu::burn_cpu;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

/// Blocks allocated through the library's callback, alive until exit.
static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

type BurnFn = unsafe extern "C" fn(u64) -> u64;
type CallFn = unsafe extern "C" fn(extern "C" fn(usize) -> *mut c_void, usize) -> *mut c_void;

/// The heap interval: 2 MiB blocks are 32 intervals long, so every one is
/// sampled (probability 1 - e^-32) and the test's 4σ check on their total is
/// a check that no sample was lost, not a 0.3 % coin toss (at the default
/// 512 KiB, three misses out of 16 blocks already fail it).
const HEAP_INTERVAL: u64 = 64 << 10;

fn start_profiler() -> lowprof::Profiler {
    lowprof::Profiler::builder().cpu_hz(999).heap_interval(HEAP_INTERVAL).start().unwrap()
}

#[inline(never)]
fn fault_burn_rust(ns: u64) -> u64 {
    let mut x = 7u64;
    burn_cpu(ns, || x = black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 1));
    x
}

/// Called by `lowprof_fault_call` in the library: one block of `len` bytes.
extern "C" fn alloc_from_library(len: usize) -> *mut c_void {
    let mut block = vec![1u8; len];
    let ptr = block.as_mut_ptr().cast::<c_void>();
    KEPT.lock().unwrap().push(block);
    ptr
}

/// The executable mappings of `path` in `/proc/self/maps`, as `start-end`.
fn text_of(path: &Path) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let path = path.to_str().unwrap();
    maps.lines()
        .filter(|l| {
            l.ends_with(path) && l.split_whitespace().nth(1).is_some_and(|p| p.contains('x'))
        })
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

/// The GNU build id `lowprof::maps` reads for the object at `path`.
fn build_id_of(path: &Path) -> String {
    let maps = lowprof::maps::read_object_mappings().unwrap();
    let object = maps.iter().find(|m| Path::new(&m.path) == path).unwrap();
    object.build_id.as_deref().unwrap_or_default().iter().map(|b| format!("{b:02x}")).collect()
}

fn write(profiler: &lowprof::Profiler, dir: &Path, suffix: &str) {
    let cpu = profiler.cpu_profile().unwrap();
    cpu.write_pprof(dir.join(format!("cpu{suffix}.pb.gz"))).unwrap();
    let heap = profiler.heap_profile().unwrap();
    heap.write_pprof(dir.join(format!("heap{suffix}.pb.gz"))).unwrap();
    println!(
        "cpu{suffix}_samples={} heap{suffix}_samples={}",
        cpu.samples.len(),
        heap.samples.len()
    );
}

fn burn(dir: &Path) {
    let profiler = start_profiler();
    println!("exe_build_id={}", build_id_of(&std::env::current_exe().unwrap()));
    for _ in 0..16 {
        KEPT.lock().unwrap().push(black_box(vec![2u8; 2 << 20]));
    }
    black_box(fault_burn_rust(600_000_000));
    write(&profiler, dir, "");
}

fn dlopen(dir: &Path, lib: &Path, mode: &str) {
    let profiler = start_profiler();
    let name = CString::new(lib.to_str().unwrap()).unwrap();
    // SAFETY: `name` is a NUL-terminated path; the library's code is the
    // fixture fault_lib.c, which has no constructors.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "dlopen {}", lib.display());
    // SAFETY: `handle` is live; the names are C strings. Both symbols are
    // functions of fault_lib.c with exactly these C signatures.
    let (burn, call) = unsafe {
        let burn = libc::dlsym(handle, c"lowprof_fault_burn".as_ptr());
        let call = libc::dlsym(handle, c"lowprof_fault_call".as_ptr());
        assert!(!burn.is_null() && !call.is_null());
        (
            std::mem::transmute::<*mut c_void, BurnFn>(burn),
            std::mem::transmute::<*mut c_void, CallFn>(call),
        )
    };
    for text in text_of(lib) {
        println!("lib_text={text}");
    }
    println!("lib_build_id={}", build_id_of(lib));
    for _ in 0..16 {
        // SAFETY: `call` is lowprof_fault_call, which calls the callback once.
        black_box(unsafe { call(alloc_from_library, 2 << 20) });
    }
    if mode == "close-warm" {
        // SAFETY: lowprof_fault_burn only reads the thread CPU clock.
        black_box(unsafe { burn(500_000_000) });
        write(&profiler, dir, "-warm");
        // SAFETY: as above.
        black_box(unsafe { burn(500_000_000) });
    } else {
        // SAFETY: as above.
        black_box(unsafe { burn(1_000_000_000) });
    }
    if mode.starts_with("close") {
        // SAFETY: no pointer into the library is used after this: the
        // function pointers are dropped and the heap blocks are Rust's.
        assert_eq!(unsafe { libc::dlclose(handle) }, 0);
    }
    if mode == "close-delete" {
        std::fs::remove_file(lib).unwrap();
    }
    println!("unloaded={}", u8::from(text_of(lib).is_empty()));
    write(&profiler, dir, "");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(2).expect("usage: symbol_faults burn|dlopen <dir> …"));
    match args[1].as_str() {
        "burn" => burn(&dir),
        "dlopen" => {
            let lib = PathBuf::from(args.get(3).expect("dlopen needs <lib.so>"));
            let mode = args.get(4).map_or("keep", String::as_str);
            let modes = ["keep", "close", "close-warm", "close-delete"];
            assert!(modes.contains(&mode), "mode {mode}");
            dlopen(&dir, &lib, mode);
        }
        other => panic!("unknown mode {other}"),
    }
    println!("ok");
}
