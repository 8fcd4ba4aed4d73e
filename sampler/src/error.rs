//! The sampler's typed errors. Every message says what to change.

use core::fmt;

use crate::{MAX_HZ, MIN_HZ};

/// Why [`crate::start`] (or [`crate::block_sigprof_on_current_thread`]) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The sampling frequency is outside [`MIN_HZ`]`..=`[`MAX_HZ`].
    InvalidFrequency {
        /// The frequency that was asked for.
        hz: u32,
    },
    /// CPU sampling is already running in this process.
    AlreadyRunning,
    /// CPU sampling is not available on this platform; the text says why.
    Unsupported(&'static str),
    /// A system call failed.
    Os {
        /// The call that failed.
        call: &'static str,
        /// Its `errno`.
        errno: i32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidFrequency { hz } => write!(
                f,
                "cpu_hz({hz}) is out of range: use {MIN_HZ}..={MAX_HZ} Hz, or 0 to turn CPU sampling off"
            ),
            Error::AlreadyRunning => f.write_str(
                "CPU sampling is already running in this process: call stop() before starting it again \
                 (there is one CPU sampler per process)",
            ),
            Error::Unsupported(why) => write!(f, "CPU sampling is not supported {why}"),
            Error::Os { call, errno } => {
                let os = std::io::Error::from_raw_os_error(*errno);
                write!(f, "{call} failed: {os}")?;
                if call.starts_with("timer_") {
                    f.write_str(
                        "; per-thread CPU timers are unavailable here (a seccomp filter or an old kernel?): \
                         use TimerMode::Process instead",
                    )?;
                } else if *call == "sigaction" {
                    f.write_str("; another component may own SIGPROF: turn CPU sampling off (hz 0)")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_change() {
        let e = Error::InvalidFrequency { hz: 5000 }.to_string();
        assert_eq!(
            e,
            "cpu_hz(5000) is out of range: use 1..=1000 Hz, or 0 to turn CPU sampling off"
        );
        assert!(Error::AlreadyRunning.to_string().contains("stop()"));
        let os = Error::Os { call: "timer_create", errno: libc::EPERM }.to_string();
        assert!(os.starts_with("timer_create failed: "), "{os}");
        assert!(os.contains("TimerMode::Process"), "{os}");
    }
}
