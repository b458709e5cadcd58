//! Running a long engine call from Python: the call runs on a worker thread
//! with the GIL released, while the calling (main) thread wakes every
//! `POLL` to report progress to a Python callback and to run Python's
//! signal handlers. Ctrl-C (KeyboardInterrupt) or an exception from the
//! callback asks the engine to stop (`hart::interrupt`), waits for it to
//! finish its unit of work, and re-raises; a panic becomes a HartError,
//! never reaching Python as one.

use std::time::Duration;

use indicatif::ProgressBar;
use pyo3::prelude::*;

use crate::errors;

const POLL: Duration = Duration::from_millis(50);

/// Runs `job`, which counts its work on the bar it is given; `progress`,
/// if given, is called as `progress(done, total, message)` from this thread.
pub fn run<T: Send>(
    py: Python<'_>,
    progress: Option<&Bound<'_, PyAny>>,
    job: impl FnOnce(&ProgressBar) -> hart::Result<T> + Send,
) -> PyResult<T> {
    hart::interrupt::clear();
    let bar = ProgressBar::hidden();
    let report = |bar: &ProgressBar| -> PyResult<()> {
        match progress {
            Some(cb) => cb.call1((bar.position(), bar.length(), bar.message())).map(|_| ()),
            None => Ok(()),
        }
    };
    let (outcome, stopped) = std::thread::scope(|s| {
        let worker = s.spawn(|| job(&bar));
        let mut stopped: Option<PyErr> = None;
        while !worker.is_finished() {
            py.detach(|| std::thread::park_timeout(POLL));
            if stopped.is_none() {
                if let Err(e) = py.check_signals().and_then(|_| report(&bar)) {
                    hart::interrupt::request();
                    stopped = Some(e);
                }
            }
        }
        (worker.join(), stopped)
    });
    hart::interrupt::clear();
    if let Some(e) = stopped {
        return Err(e);
    }
    match outcome {
        Ok(Ok(value)) => {
            report(&bar)?;
            Ok(value)
        }
        Ok(Err(e)) => Err(errors::to_py(py, e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown cause");
            Err(errors::raise(
                py,
                "HartError",
                format!("internal error (a bug in HART): {what}"),
            ))
        }
    }
}
