//! The thread that owns the [`Symbolizer`] and turns aggregated stacks into
//! [`Profile`]s on request.
//!
//! blazesym's symbolizer is not `Send` (it caches with `Rc`), and
//! symbolizing a new binary's debug info takes tens of milliseconds, so it
//! lives on a thread of its own, `lowprof-symbolize`: the drainer never waits
//! for it, and callers of `heap_profile()` wait only for their own profile.
//!
//! ```text
//!  heap_profile() ──Job{header, stacks, values}──► lowprof-symbolize
//!       ▲                                           refresh mappings, resolve new
//!       └────────────────Profile─────────────────── addresses once, assemble
//!                                                   (idle: every 100 ms, refresh
//!                                                    mappings if dlopen/dlclose ran)
//! ```
//!
//! Between jobs the thread watches the dynamic loader's load/unload counter
//! ([`loader_generation`]) and re-reads the process's mappings when it moves.
//! A library loaded and unloaded between two profiles is then known to the
//! symbolizer (retired, with its path and build id) when samples taken inside
//! it are symbolized, instead of being a hole in the address space.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::assemble::{Header, RawSample, assemble};
use crate::error::Error;
use crate::maps::loader_generation;
use crate::profile::Profile;
use crate::symbolize::Symbolizer;

/// One profile to build.
pub(crate) struct Job {
    pub header: Header,
    pub samples: Vec<RawSample>,
    pub synthetic: Vec<(&'static str, Vec<i64>)>,
    /// Leave the allocator's own frames out of stacks (heap profiles).
    pub trim_allocator: bool,
}

/// Handle to the symbolizer thread; dropping it ends the thread.
pub(crate) struct SymbolizeThread {
    jobs: Option<Sender<(Job, SyncSender<Profile>)>>,
    handle: Option<JoinHandle<()>>,
}

impl SymbolizeThread {
    /// Starts the thread.
    pub(crate) fn spawn() -> Result<Self, Error> {
        let (tx, rx) = mpsc::channel();
        // Read here, before the caller can `dlopen` anything: read on the
        // new thread, it could already count a library loaded meanwhile,
        // and that library would never be seen to appear.
        let generation = loader_generation();
        let handle = std::thread::Builder::new()
            .name("lowprof-symbolize".into())
            .spawn(move || serve(rx, generation))
            .map_err(Error::Spawn)?;
        Ok(Self { jobs: Some(tx), handle: Some(handle) })
    }

    /// Builds a profile on the symbolizer thread and waits for it.
    pub(crate) fn build(&self, job: Job) -> Result<Profile, Error> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let sent = self.jobs.as_ref().is_some_and(|jobs| jobs.send((job, reply_tx)).is_ok());
        if !sent {
            return Err(Error::SymbolizerFailed);
        }
        reply_rx.recv().map_err(|_| Error::SymbolizerFailed)
    }
}

impl Drop for SymbolizeThread {
    fn drop(&mut self) {
        // Closing the channel ends the loop in `serve`.
        self.jobs.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// How often the idle thread checks whether a library was loaded or
/// unloaded. A library that lives shorter than this between two profiles may
/// be missed: its addresses then get the placeholder mapping (see
/// `assemble`). Each check is one `dl_iterate_phdr` call stopped at the
/// first object: no system call, no file read.
const LOADER_POLL: Duration = Duration::from_millis(100);

/// The thread's loop; `generation` is the loader's count when the profiler
/// started.
fn serve(jobs: Receiver<(Job, SyncSender<Profile>)>, mut generation: Option<u64>) {
    // Never sampled by lowprof's own CPU timer.
    let _ = lowprof_sampler::block_sigprof_on_current_thread();
    let mut symbolizer: Option<Symbolizer> = None;
    loop {
        let (job, reply) = match jobs.recv_timeout(LOADER_POLL) {
            Ok(next) => next,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let now = loader_generation();
                if now != generation {
                    generation = now;
                    // Read the maps now, while a new library is loaded: if
                    // it is `dlclose`d before the next profile, the
                    // symbolizer has seen it and retires it instead of
                    // leaving its addresses in no object.
                    let refreshed = catch_unwind(AssertUnwindSafe(|| match symbolizer.as_mut() {
                        Some(s) => s.refresh_mappings(),
                        None => symbolizer = Some(Symbolizer::new()),
                    }));
                    if refreshed.is_err() {
                        symbolizer = None;
                    }
                }
                continue;
            }
        };
        // The maps are read below; read the count first, so that a change
        // after it is seen by the next poll.
        generation = loader_generation();
        let built = catch_unwind(AssertUnwindSafe(|| {
            let symbolizer = match symbolizer.as_mut() {
                Some(s) => {
                    // Libraries may have been loaded or unloaded since.
                    s.refresh_mappings();
                    s
                }
                None => symbolizer.insert(Symbolizer::new()),
            };
            assemble(symbolizer, job.header, &job.samples, &job.synthetic, job.trim_allocator)
        }));
        match built {
            Ok(profile) => {
                let _ = reply.send(profile);
            }
            // A bug while reading debug info must not end profiling: start
            // over with a fresh symbolizer; the caller gets an error.
            Err(_) => symbolizer = None,
        }
    }
}
