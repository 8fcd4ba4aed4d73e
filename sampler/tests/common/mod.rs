//! Helpers shared by the integration tests (each test file is its own
//! process, which matters: the sampler is process-global).
//!
//! - [`Collector`]: the drainer the exporter would run (SIGPROF blocked,
//!   `maintain` + `drain` every 10 ms).
//! - [`Symbols`]: the test binary's own ELF symbol table, so that a sampled
//!   address can be attributed to the exact function that contains it (start
//!   and size from `.symtab`), instead of guessing a function's extent.
//! - CPU clocks.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// An owned copy of one drained CPU sample.
#[derive(Debug, Clone)]
pub struct Sample {
    pub thread: u64,
    pub weight: u64,
    pub flags: u64,
    pub frames: Vec<u64>,
}

/// The drainer thread.
pub struct Collector {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Sample>>,
}

impl Collector {
    pub fn spawn() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("lp-collector".into())
            .spawn(move || {
                lowprof_sampler::block_sigprof_on_current_thread().unwrap();
                ready_tx.send(()).unwrap();
                let mut scratch = vec![0u64; lowprof_sampler::RECORD_WORDS];
                let mut out = Vec::new();
                let mut take = |out: &mut Vec<Sample>| {
                    lowprof_sampler::drain(&mut scratch, |s| {
                        out.push(Sample {
                            thread: s.thread,
                            weight: s.weight,
                            flags: s.flags,
                            frames: s.frames.to_vec(),
                        })
                    });
                };
                while !flag.load(Ordering::Acquire) {
                    lowprof_sampler::maintain();
                    take(&mut out);
                    std::thread::sleep(Duration::from_millis(10));
                }
                take(&mut out);
                out
            })
            .unwrap();
        ready_rx.recv().unwrap();
        Self { stop, handle }
    }

    /// Stops the collector after a final drain and returns every sample.
    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap()
    }
}

/// Drains whatever is queued, on the calling thread.
pub fn drain_now() -> Vec<Sample> {
    let mut scratch = vec![0u64; lowprof_sampler::RECORD_WORDS];
    let mut out = Vec::new();
    lowprof_sampler::drain(&mut scratch, |s| {
        out.push(Sample {
            thread: s.thread,
            weight: s.weight,
            flags: s.flags,
            frames: s.frames.to_vec(),
        })
    });
    out
}

fn timespec_nanos(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into a live local.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of the calling thread.
pub fn thread_cpu_nanos() -> u64 {
    timespec_nanos(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time (user + system) of the whole process, from `getrusage`.
pub fn process_cpu_nanos() -> u64 {
    // SAFETY: getrusage writes into a zeroed local.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) }, 0);
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Sends a SIGPROF that looks like one of lowprof's timer signals; 0 or -1
/// like the system call.
pub fn forge_timer_signal(pid: i32, tid: i32) -> i64 {
    let cookie = lowprof_sampler::timer_cookie();
    match lowprof_sampler::queue_timer_signal(pid, tid, libc::SIGPROF, cookie, 0) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

pub fn gettid() -> u64 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u64 }
}

/// A function symbol of the test binary, at its run-time address.
#[derive(Debug, Clone)]
pub struct Sym {
    pub name: String,
    pub start: u64,
    pub size: u64,
}

impl Sym {
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.start + self.size
    }
}

/// Marks a known symbol so the load bias of the PIE can be computed.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lowprof_sampler_test_anchor() -> u64 {
    std::hint::black_box(7)
}

/// The function symbols of `/proc/self/exe`, sorted by address.
pub struct Symbols {
    syms: Vec<Sym>,
}

fn u16_at(b: &[u8], at: usize) -> u64 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as u64
}
fn u32_at(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as u64
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl Symbols {
    /// Reads `.symtab` of the running test binary (ELF64 little-endian).
    pub fn load() -> Self {
        let elf = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf[4], 2, "ELF64");
        let shoff = u64_at(&elf, 0x28) as usize;
        let shentsize = u16_at(&elf, 0x3a) as usize;
        let shnum = u16_at(&elf, 0x3c) as usize;
        let section = |i: usize| shoff + i * shentsize;
        let mut raw = Vec::new();
        for i in 0..shnum {
            let sh = section(i);
            if u32_at(&elf, sh + 4) != 2 {
                continue; // not SHT_SYMTAB
            }
            let (off, size, link) = (
                u64_at(&elf, sh + 24) as usize,
                u64_at(&elf, sh + 32) as usize,
                u32_at(&elf, sh + 40) as usize,
            );
            let strtab = u64_at(&elf, section(link) + 24) as usize;
            for s in (off..off + size).step_by(24) {
                let info = elf[s + 4];
                let value = u64_at(&elf, s + 8);
                let sz = u64_at(&elf, s + 16);
                if info & 0xf != 2 || value == 0 || sz == 0 {
                    continue; // not a defined STT_FUNC
                }
                let name_at = strtab + u32_at(&elf, s) as usize;
                let end = elf[name_at..].iter().position(|&c| c == 0).unwrap();
                let name = String::from_utf8_lossy(&elf[name_at..name_at + end]).into_owned();
                raw.push(Sym { name, start: value, size: sz });
            }
        }
        assert!(!raw.is_empty(), "the test binary has no .symtab (stripped?)");
        let anchor = raw
            .iter()
            .find(|s| s.name == "lowprof_sampler_test_anchor")
            .expect("anchor symbol")
            .start;
        let bias = (lowprof_sampler_test_anchor as *const () as u64).wrapping_sub(anchor);
        for s in &mut raw {
            s.start = s.start.wrapping_add(bias);
        }
        raw.sort_by_key(|s| (s.start, std::cmp::Reverse(s.size)));
        raw.dedup_by_key(|s| s.start);
        Self { syms: raw }
    }

    /// The function that contains `addr`.
    pub fn containing(&self, addr: u64) -> Option<&Sym> {
        let i = self.syms.partition_point(|s| s.start <= addr);
        let s = self.syms.get(i.checked_sub(1)?)?;
        s.contains(addr).then_some(s)
    }

    /// The function that starts at `f` (a function pointer).
    pub fn of(&self, f: usize) -> Sym {
        let s = self.containing(f as u64).unwrap_or_else(|| panic!("no symbol at {f:#x}"));
        assert_eq!(s.start, f as u64, "{f:#x} is inside {s:?}, not its start");
        s.clone()
    }
}

/// A return address `r` belongs to the call instruction just before it.
pub fn call_site(r: u64) -> u64 {
    r - 1
}
