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
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use crate::assemble::{Header, RawSample, assemble};
use crate::error::Error;
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
        let handle = std::thread::Builder::new()
            .name("lowprof-symbolize".into())
            .spawn(move || serve(rx))
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

fn serve(jobs: Receiver<(Job, SyncSender<Profile>)>) {
    // Never sampled by lowprof's own CPU timer.
    let _ = lowprof_sampler::block_sigprof_on_current_thread();
    let mut symbolizer: Option<Symbolizer> = None;
    for (job, reply) in jobs {
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
