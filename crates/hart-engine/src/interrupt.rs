//! A stop request for long calls made from another thread: the Python
//! binding turns Ctrl-C into [`request`], and the loops that journal or count
//! their work ([`check`] after each finished unit) end with
//! [`HartError::Interrupted`], leaving what they finished on disk as a killed
//! CLI run does. The CLI never requests it (SIGINT ends the process there).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{HartError, Result};

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks the running call to stop at its next [`check`].
pub fn request() {
    STOP.store(true, Ordering::SeqCst);
}

/// Forgets a request: called before a new call starts.
pub fn clear() {
    STOP.store(false, Ordering::SeqCst);
}

/// `Err(Interrupted)` once a stop was requested.
pub fn check() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        Err(HartError::Interrupted)
    } else {
        Ok(())
    }
}
