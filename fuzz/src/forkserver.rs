//! Inputs run in forked children, for parsers whose native code can take the
//! process down (libtorch's TorchScript loader: SIGSEGV, or `terminate`).
//! A child checks inputs one after another and reports each result through a
//! pipe until one kills it; the parent records that input as a death and
//! forks the next child from the input after it. Forking once per death, not
//! per input, keeps a 10⁶ run at the speed of the parser.
//!
//! The child is a copy of the parent, input generator included, so parent and
//! child draw the same inputs: the parent draws one per reported result and,
//! after a death, the one that was running. Fork only where no other thread
//! holds a lock (hart-fuzz's `main` is single-threaded, libtorch runs with one
//! thread, so no OpenMP pool exists to be copied half-locked).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

/// What one input did.
#[derive(Debug, PartialEq)]
pub enum Event {
    Parsed,
    Error,
    /// A failure the child caught (a panic, a multi-line message, an allocation over the cap).
    Failure(String),
    /// The child died on this input, or stopped answering.
    Died(Death),
}

#[derive(Debug, PartialEq)]
pub struct Death {
    /// The signal, exit status or hang, and the first line the child printed.
    pub why: String,
    /// The Rust runtime reported the death (a panic that was not caught, a
    /// failed allocation, a stack overflow): HART's failure, not libtorch's.
    pub rust: bool,
}

/// Draws the next input: which of the target's files it replaces, and its bytes.
pub type Next<'a> = dyn FnMut() -> (usize, Vec<u8>) + 'a;
/// Checks one input: Ok(parsed?) for a value or one error, Err(why) for a failure.
pub type Check<'a> = dyn Fn(usize, &[u8]) -> Result<bool, String> + 'a;
/// Told each input's event, in order: (input number, file replaced, bytes, event).
pub type On<'a> = dyn FnMut(u64, usize, &[u8], Event) + 'a;

/// An input's result as `try_input` gives it: parsed, one error, or a failure.
pub fn event(r: Result<bool, String>) -> Event {
    match r {
        Ok(true) => Event::Parsed,
        Ok(false) => Event::Error,
        Err(why) => Event::Failure(why),
    }
}

/// Lines the Rust runtime prints before it aborts a process.
const RUST_DEATHS: [&str; 3] = ["panicked", "memory allocation of", "has overflowed its stack"];

/// Runs `n` inputs drawn from `next` (which file of the target each replaces,
/// and its bytes) through `check` in children, calling `on(i, k, input,
/// event)` for each in order. An input without a result after `timeout` is
/// a death too (the child is killed).
pub fn run(n: u64, timeout: Duration, next: &mut Next, check: &Check, on: &mut On) -> std::io::Result<()> {
    // The current child's stderr, read back when it dies.
    let mut log = tempfile::tempfile()?;
    let mut i = 0;
    while i < n {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array it is given.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        log.set_len(0)?;
        // SAFETY: the caller forks from a single-threaded process (see the module comment).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: the read end is the parent's; the write end is ours from here on.
            let pipe = unsafe {
                libc::close(fds[0]);
                libc::dup2(log.as_raw_fd(), 2);
                File::from_raw_fd(fds[1])
            };
            // A panic must not unwind out of the child into the parent's loop.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(n - i, next, check, pipe)));
            let _ = std::io::stderr().write_all(b"hart-fuzz: a panic escaped the check (panicked)\n");
            // SAFETY: ends this process only, without the parent's destructors.
            unsafe { libc::_exit(101) }
        }
        // SAFETY: the write end is the child's; the read end is ours.
        let mut pipe = unsafe {
            libc::close(fds[1]);
            File::from_raw_fd(fds[0])
        };
        let hang = loop {
            match read_event(&mut pipe, timeout)? {
                Some(Some(event)) => {
                    let (k, input) = next();
                    on(i, k, &input, event);
                    i += 1;
                }
                Some(None) => break false,
                None => break true,
            }
        };
        let end = reap(pid, hang);
        if i < n || end != End::Exited(0) {
            let (k, input) = next();
            on(i, k, &input, Event::Died(death(end, hang, &mut log)));
            i += 1;
        }
    }
    Ok(())
}

/// The child: checks `n` inputs, reporting each, then exits without running
/// destructors (the parent owns the work directory and libtorch's globals).
fn child(n: u64, next: &mut Next, check: &Check, mut pipe: File) {
    for _ in 0..n {
        let (k, input) = next();
        let report = match event(check(k, &input)) {
            Event::Parsed => vec![b'p'],
            Event::Failure(why) => {
                let mut r = vec![b'f'];
                r.extend((why.len() as u32).to_le_bytes());
                r.extend(why.as_bytes());
                r
            }
            Event::Error => vec![b'e'],
            Event::Died(_) => unreachable!("a result in process is never a death"),
        };
        if pipe.write_all(&report).is_err() {
            break; // the parent is gone
        }
    }
    // SAFETY: ends this process only.
    unsafe { libc::_exit(0) }
}

/// The next result: Some(Some(event)), Some(None) at end of stream (the child
/// exited or died), None when nothing came within `timeout`.
fn read_event(pipe: &mut File, timeout: Duration) -> std::io::Result<Option<Option<Event>>> {
    let mut poll = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    match unsafe { libc::poll(&mut poll, 1, ms) } {
        0 => return Ok(None),
        r if r < 0 => return Err(std::io::Error::last_os_error()),
        _ => {}
    }
    let mut tag = [0u8];
    if pipe.read(&mut tag)? == 0 {
        return Ok(Some(None));
    }
    Ok(Some(Some(match tag[0] {
        b'p' => Event::Parsed,
        b'e' => Event::Error,
        _ => {
            let mut len = [0u8; 4];
            pipe.read_exact(&mut len)?;
            let mut why = vec![0u8; u32::from_le_bytes(len) as usize];
            pipe.read_exact(&mut why)?;
            Event::Failure(String::from_utf8_lossy(&why).into_owned())
        }
    })))
}

/// How a child ended.
#[derive(Debug, PartialEq)]
enum End {
    Exited(i32),
    Signalled(i32),
}

/// Waits for the child, killing it first when it hangs.
fn reap(pid: libc::pid_t, hang: bool) -> End {
    let mut status = 0;
    // SAFETY: `pid` is our child, not yet waited for.
    unsafe {
        if hang {
            libc::kill(pid, libc::SIGKILL);
        }
        libc::waitpid(pid, &mut status, 0);
    }
    if libc::WIFEXITED(status) {
        End::Exited(libc::WEXITSTATUS(status))
    } else {
        End::Signalled(libc::WTERMSIG(status))
    }
}

fn death(end: End, hang: bool, log: &mut File) -> Death {
    let mut text = String::new();
    let _ = log.seek(SeekFrom::Start(0)).and_then(|_| log.read_to_string(&mut text));
    // The first line names the death ("terminate called after throwing …");
    // a C++ backtrace follows it.
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let how = match (hang, end) {
        (true, _) => "hang (no result in time)".to_string(),
        (false, End::Exited(code)) => format!("exit status {code}"),
        (false, End::Signalled(sig)) => signal_name(sig),
    };
    Death {
        why: if first.is_empty() {
            how
        } else {
            format!("{how}: {first}")
        },
        rust: RUST_DEATHS.iter().any(|m| text.contains(m)),
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGKILL => "SIGKILL".into(),
        s => format!("signal {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deaths by signal and by exit are each recorded once, on the input that
    /// caused them, and the inputs after them still run (in new children).
    #[test]
    fn deaths_are_recorded_and_the_run_goes_on() {
        let _torch = crate::tests::TORCH.lock().unwrap_or_else(|e| e.into_inner());
        let inputs: Vec<&[u8]> = vec![b"ok", b"segv", b"err", b"exit", b"fail", b"abort", b"panic", b"ok"];
        let mut queue = inputs.clone().into_iter();
        let check = |_: usize, input: &[u8]| match input {
            // A real fault: Rust's own SIGSEGV handler passes it on to the default action.
            b"segv" => unsafe {
                std::ptr::null_mut::<u8>().write_volatile(1);
                unreachable!()
            },
            b"abort" => std::process::abort(),
            b"exit" => {
                // Past the test harness's capture of eprintln!, as native code writes.
                let _ = std::io::stderr().write_all(b"bye\n");
                unsafe { libc::_exit(3) }
            }
            b"panic" => panic!("uncaught"),
            b"err" => Ok(false),
            b"fail" => Err("multi\nline".to_string()),
            _ => Ok(true),
        };
        let mut seen = vec![];
        run(
            inputs.len() as u64,
            Duration::from_secs(30),
            &mut || (0, queue.next().unwrap().to_vec()),
            &check,
            &mut |i, _, input, e| seen.push((i, String::from_utf8_lossy(input).into_owned(), e)),
        )
        .unwrap();
        let died = |why: &str| {
            Event::Died(Death {
                why: why.into(),
                rust: why.contains("panicked"),
            })
        };
        let want = vec![
            (0, "ok", Event::Parsed),
            (1, "segv", died("SIGSEGV")),
            (2, "err", Event::Error),
            (3, "exit", died("exit status 3: bye")),
            (4, "fail", Event::Failure("multi\nline".into())),
            (5, "abort", died("SIGABRT")),
            (
                6,
                "panic",
                died("exit status 101: hart-fuzz: a panic escaped the check (panicked)"),
            ),
            (7, "ok", Event::Parsed),
        ];
        let want: Vec<_> = want.into_iter().map(|(i, s, e)| (i, s.to_string(), e)).collect();
        assert_eq!(seen, want);
    }

    /// A child that stops answering is killed and its input recorded as a hang.
    #[test]
    fn a_hang_is_a_death() {
        let _torch = crate::tests::TORCH.lock().unwrap_or_else(|e| e.into_inner());
        let check = |_: usize, input: &[u8]| {
            if input == b"hang" {
                std::thread::sleep(Duration::from_secs(60));
            }
            Ok(true)
        };
        let mut queue = [b"hang".to_vec(), b"ok".to_vec()].into_iter();
        let mut seen = vec![];
        run(
            2,
            Duration::from_millis(300),
            &mut || (0, queue.next().unwrap()),
            &check,
            &mut |i, _, _, e| seen.push((i, e)),
        )
        .unwrap();
        assert!(
            matches!(&seen[0], (0, Event::Died(d)) if d.why.starts_with("hang")),
            "{seen:?}"
        );
        assert_eq!(seen[1], (1, Event::Parsed));
    }
}
