//! Thread discovery (`/proc/self/task`) and thread names
//! (`/proc/self/task/<tid>/comm`), both read off the hot path.
//!
//! Names are cached by tid. A thread is read on each of its first
//! [`NAME_READS`] sightings, because a thread often names itself just after it
//! starts (Rust's `thread::Builder::name` does, from inside the new thread),
//! so the first scan may still see the spawner's name. A name outlives its
//! thread until [`forget_exited`], so samples drained after the thread ended
//! are still labelled; a tid that is reused gets its name read afresh.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Sightings on which a thread's name is (re)read.
const NAME_READS: u8 = 3;

struct Name {
    name: String,
    alive: bool,
    reads: u8,
}

static NAMES: Mutex<BTreeMap<u64, Name>> = Mutex::new(BTreeMap::new());

fn names() -> MutexGuard<'static, BTreeMap<u64, Name>> {
    NAMES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The ids of the process's threads right now.
pub(crate) fn scan() -> std::io::Result<BTreeSet<u64>> {
    let mut tids = BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        if let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
            tids.insert(tid);
        }
    }
    Ok(tids)
}

/// The process's thread count, from one `stat` of `/proc/self/task` (procfs
/// gives that directory `2 + threads` links), or `None` if unavailable.
pub(crate) fn count_hint() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/task").ok().map(|m| m.nlink().saturating_sub(2))
}

/// The calling thread's kernel id.
pub(crate) fn current_tid() -> u64 {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    u64::try_from(tid).unwrap_or(0)
}

fn read_comm(tid: u64) -> Option<String> {
    let mut name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
    while name.ends_with('\n') {
        name.pop();
    }
    Some(name)
}

/// Updates the name cache after a scan: reads the names of threads seen fewer
/// than [`NAME_READS`] times (or seen again after exiting: a reused tid), and
/// marks `gone` threads as exited.
pub(crate) fn observe(alive: &BTreeSet<u64>, gone: &[u64]) {
    let mut names = names();
    for &tid in gone {
        if let Some(entry) = names.get_mut(&tid) {
            entry.alive = false;
        }
    }
    for &tid in alive {
        let due = match names.get(&tid) {
            None => true,
            Some(entry) => !entry.alive || entry.reads < NAME_READS,
        };
        if !due {
            continue;
        }
        let Some(name) = read_comm(tid) else { continue };
        let entry = names.entry(tid).or_insert(Name { name: String::new(), alive: true, reads: 0 });
        if !entry.alive {
            entry.reads = 0;
        }
        entry.name = name;
        entry.alive = true;
        entry.reads = entry.reads.saturating_add(1);
    }
}

/// The cached name of `tid`, read now if the thread is alive but unknown.
pub(crate) fn name(tid: u64) -> Option<String> {
    let mut names = names();
    if let Some(entry) = names.get(&tid) {
        return Some(entry.name.clone());
    }
    let name = read_comm(tid)?;
    names.insert(tid, Name { name: name.clone(), alive: true, reads: 1 });
    Some(name)
}

/// Drops the names of threads that have exited (by a fresh scan; by the last
/// scan's verdict if `/proc` cannot be read).
pub(crate) fn forget_exited() {
    let alive = scan().ok();
    names().retain(|tid, entry| match &alive {
        Some(alive) => alive.contains(tid),
        None => entry.alive,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_sees_us_and_names_follow() {
        let me = current_tid();
        let tids = scan().unwrap();
        assert!(tids.contains(&me));
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("lp-name-test".into())
            .spawn(move || {
                tx.send(current_tid()).unwrap();
                done_rx.recv().unwrap();
            })
            .unwrap();
        let tid = rx.recv().unwrap();
        let alive = scan().unwrap();
        observe(&alive, &[]);
        assert_eq!(name(tid).as_deref(), Some("lp-name-test"));
        done_tx.send(()).unwrap();
        t.join().unwrap();
        // pthread_join returns when the kernel clears the tid, which is
        // before the exiting task leaves /proc/self/task: poll for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let after = loop {
            let tids = scan().unwrap();
            if !tids.contains(&tid) || std::time::Instant::now() > deadline {
                break tids;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert!(!after.contains(&tid));
        observe(&after, &[tid]);
        assert_eq!(name(tid).as_deref(), Some("lp-name-test"), "kept after exit");
        forget_exited();
        assert_eq!(name(tid), None, "forgotten");
    }
}
