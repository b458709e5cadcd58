//! `hart-fuzz`: mutation fuzzing of HART's parsers on stable Rust.
//!
//!     cargo run --release -p hart-fuzz -- TARGET|all --iterations N [--seed S]
//!
//! Each input is a valid seed file with a few mutations (bit flips,
//! truncations, splices, edge values in length and dimension fields, line
//! and token edits for text). Every input must end in a value or one
//! `HartError`: a panic, or any single Rust allocation above [`ALLOC_CAP`],
//! is a failure, and the input is kept under `fuzz/crashes/`. Targets whose
//! native code can kill the process (libtorch's TorchScript loader) run in
//! forked children ([`forkserver`]): a death there is counted and kept apart
//! (`fuzz/crashes/TARGET/native-crash/`), not as HART's failure, and the run
//! goes on.

mod alloc;
mod forkserver;
mod mutate;
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use forkserver::Event;
use targets::Target;

/// No single Rust allocation an input drives may exceed this.
pub const ALLOC_CAP: usize = 1 << 30;

static PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Targets run in forked children: libtorch's TorchScript loader can take
/// the process down on a damaged file (SIGSEGV, or `terminate` while it
/// formats its own error; inputs in `fuzz/known-crashes/`).
const ISOLATED: [&str; 1] = ["torchscript"];

/// Targets `all` leaves out: TorchScript loads some 80 inputs a second, too
/// slow for the short pass `scripts/test.sh` runs; run it by name.
const NOT_IN_ALL: [&str; 1] = ["torchscript"];

/// An isolated input with no result after this long is a hang.
const HANG: std::time::Duration = std::time::Duration::from_secs(60);

#[global_allocator]
static GLOBAL: alloc::Peak = alloc::Peak;

#[derive(Default)]
struct Counts {
    ok: u64,
    errors: u64,
    failures: u64,
    /// Isolated targets: children killed by native code (a signal, an exit, a hang).
    native_crashes: u64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(which), Some(Ok(iterations))) = (args.first().cloned(), value("--iterations").map(|v| v.parse::<u64>()))
    else {
        eprintln!("usage: hart-fuzz TARGET|all --iterations N [--seed S]");
        return ExitCode::from(2);
    };
    let seed = value("--seed").and_then(|s| s.parse().ok()).unwrap_or(0u64);
    quiet_panics();
    tch::set_num_threads(1);
    let all = targets::all();
    let chosen: Vec<&Target> = all
        .iter()
        .filter(|t| t.name == which || which == "all" && !NOT_IN_ALL.contains(&t.name))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(|t| t.name).collect();
        eprintln!("error: unknown target {which:?} ({})", names.join(", "));
        return ExitCode::FAILURE;
    }
    let mut failed = false;
    for t in chosen {
        let started = Instant::now();
        let c = run(t, iterations, seed);
        let native = if ISOLATED.contains(&t.name) {
            format!(", {} native crashes", c.native_crashes)
        } else {
            String::new()
        };
        println!(
            "{:<15} {:>9} inputs: {:>9} parsed, {:>9} errors, {} failures{native}, {:.1}s",
            t.name,
            iterations,
            c.ok,
            c.errors,
            c.failures,
            started.elapsed().as_secs_f64()
        );
        failed |= c.failures > 0;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run(t: &Target, iterations: u64, seed: u64) -> Counts {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let work = tempfile::Builder::new()
        .prefix(&format!("hart-fuzz-{}-", t.name))
        .tempdir_in(scratch())
        .expect("work directory");
    eprintln!("{}: inputs in {}", t.name, work.path().display());
    let mut c = Counts::default();
    let mut next = || next_input(t, &mut rng);
    let check = |k: usize, input: &[u8]| try_input(t, work.path(), k, input);
    let mut on = |i: u64, k: usize, input: &[u8], event: Event| {
        let (dir, why) = match event {
            Event::Parsed => return c.ok += 1,
            Event::Error => return c.errors += 1,
            Event::Failure(why) => (t.name, why),
            Event::Died(d) if d.rust => (t.name, format!("process died: {}", d.why)),
            Event::Died(d) => {
                c.native_crashes += 1;
                let why = format!("{} input {i}: process died: {}", t.name, d.why);
                return keep(
                    &format!("{}/native-crash", t.name),
                    &format!("{k}-{seed}-{i}"),
                    input,
                    &why,
                );
            }
        };
        c.failures += 1;
        keep(
            dir,
            &format!("{k}-{seed}-{i}"),
            input,
            &format!("{} input {i}: {why}", t.name),
        );
    };
    if ISOLATED.contains(&t.name) {
        forkserver::run(iterations, HANG, &mut next, &check, &mut on).expect("forking a child");
    } else {
        for i in 0..iterations {
            let (k, input) = next();
            on(i, k, &input, forkserver::event(check(k, &input)));
        }
    }
    c
}

/// The next input: which of `t`'s files it replaces, and its bytes.
fn next_input(t: &Target, rng: &mut ChaCha8Rng) -> (usize, Vec<u8>) {
    let k = rng.random_range(0..t.files.len());
    let other = &t.files[rng.random_range(0..t.files.len())].1;
    let input = if t.text {
        mutate::mutate_text(rng, &t.files[k].1, other)
    } else {
        mutate::mutate(rng, &t.files[k].1, other)
    };
    (k, input)
}

/// Keeps an input that failed (or killed a child) under `fuzz/crashes/DIR/NAME`.
fn keep(dir: &str, name: &str, input: &[u8], why: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes").join(dir);
    let file = dir.join(name);
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(&file, input);
    eprintln!("{why} (input kept in {})", file.display());
}

/// Writes `t`'s files with file `k` replaced by `input` and parses them:
/// Ok(parsed?) for a value or a one-line error, Err(why) for a failure.
fn try_input(t: &Target, work: &Path, k: usize, input: &[u8]) -> Result<bool, String> {
    for (j, (name, valid)) in t.files.iter().enumerate() {
        let body = if j == k { input.to_vec() } else { valid.clone() };
        write(&work.join(name), &(t.encode)(body));
    }
    alloc::reset();
    let outcome = catch_unwind(AssertUnwindSafe(|| (t.parse)(work)));
    let peak = alloc::peak();
    match outcome {
        _ if peak > ALLOC_CAP => Err(format!("allocation of {peak} bytes (cap {ALLOC_CAP})")),
        Ok(Ok(())) => Ok(true),
        Ok(Err(e)) if e.to_string().contains('\n') => Err(format!("multi-line error: {:?}", e.to_string())),
        Ok(Err(_)) => Ok(false),
        Err(_) => Err(PANIC
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()),
    }
}

/// A panicking parser is counted, not printed: keep the message for the report.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        *PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.to_string().replace('\n', " "));
    }));
}

/// Memory-backed scratch space where there is one: a million inputs are a million writes.
fn scratch() -> std::path::PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("work directory");
    }
    std::fs::write(path, bytes).expect("writing an input");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input a fuzz run once failed on (`regressions/TARGET/K-…`, K the
    /// index of the file it replaces) must now end in a value or one error.
    /// Tests that load TorchScript or fork take turns: a fork while another
    /// test thread is inside libtorch could copy a held lock into the child.
    pub static TORCH: Mutex<()> = Mutex::new(());

    #[test]
    fn regressions_end_in_a_value_or_one_error() {
        let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
        quiet_panics();
        let all = targets::all();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
        let mut n = 0;
        for t in &all {
            let Ok(entries) = std::fs::read_dir(root.join(t.name)) else {
                continue;
            };
            let work = tempfile::tempdir().unwrap();
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let k: usize = name.split('-').next().unwrap().parse().unwrap();
                let input = std::fs::read(e.path()).unwrap();
                if let Err(why) = try_input(t, work.path(), k, &input) {
                    panic!("{} regression {name}: {why}", t.name);
                }
                n += 1;
            }
        }
        assert!(n > 0, "no regression inputs under {}", root.display());
    }

    /// The inputs that once killed a fuzz run are counted as native crashes
    /// in their children, and the valid file after them still loads.
    #[test]
    fn known_libtorch_crashes_are_survived() {
        let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
        quiet_panics();
        tch::set_num_threads(1);
        let all = targets::all();
        let t = all.iter().find(|t| t.name == "torchscript").unwrap();
        let known = Path::new(env!("CARGO_MANIFEST_DIR")).join("known-crashes");
        let mut inputs = vec![];
        for name in ["torchscript-segv.pt", "torchscript-abort.pt"] {
            inputs.push(std::fs::read(known.join(name)).unwrap());
        }
        inputs.push(t.files[0].1.clone());
        let mut queue = inputs.into_iter();
        let work = tempfile::tempdir().unwrap();
        let mut seen = vec![];
        forkserver::run(
            3,
            HANG,
            &mut || (0, queue.next().unwrap()),
            &|k, input| try_input(t, work.path(), k, input),
            &mut |_, _, _, e| seen.push(e),
        )
        .unwrap();
        assert!(
            matches!(&seen[..], [Event::Died(a), Event::Died(b), Event::Parsed] if !a.rust && !b.rust),
            "{seen:?}"
        );
    }
}
