//! `hart-fuzz`: mutation fuzzing of HART's parsers on stable Rust.
//!
//!     cargo run --release -p hart-fuzz -- TARGET|all --iterations N [--seed S]
//!
//! Each input is a valid seed file with a few mutations (bit flips,
//! truncations, splices, edge values in length and dimension fields, line
//! and token edits for text). Every input must end in a value or one
//! `HartError`: a panic, or any single Rust allocation above [`ALLOC_CAP`],
//! is a failure, and the input is kept under `fuzz/crashes/`. An abort
//! (which no harness can catch) leaves the input in the work directory
//! printed at the start.

mod alloc;
mod mutate;
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use targets::Target;

/// No single Rust allocation an input drives may exceed this.
pub const ALLOC_CAP: usize = 1 << 30;

static PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Targets `all` leaves out. libtorch's TorchScript loader can take the
/// process down on a damaged file (SIGSEGV, or `terminate` while it formats
/// its own error; inputs in `fuzz/known-crashes/`), which no in-process
/// harness survives: run it by name.
const NOT_IN_ALL: [&str; 1] = ["torchscript"];

#[global_allocator]
static GLOBAL: alloc::Peak = alloc::Peak;

#[derive(Default)]
struct Counts {
    ok: u64,
    errors: u64,
    failures: u64,
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
        println!(
            "{:<15} {:>9} inputs: {:>9} parsed, {:>9} errors, {} failures, {:.1}s",
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
    for i in 0..iterations {
        let k = rng.random_range(0..t.files.len());
        let other = &t.files[rng.random_range(0..t.files.len())].1;
        let input = if t.text {
            mutate::mutate_text(&mut rng, &t.files[k].1, other)
        } else {
            mutate::mutate(&mut rng, &t.files[k].1, other)
        };
        match try_input(t, work.path(), k, &input) {
            Ok(true) => c.ok += 1,
            Ok(false) => c.errors += 1,
            Err(why) => {
                c.failures += 1;
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes").join(t.name);
                let file = dir.join(format!("{k}-{seed}-{i}"));
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(&file, &input);
                eprintln!("{} input {i}: {why} (input kept in {})", t.name, file.display());
            }
        }
    }
    c
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
    #[test]
    fn regressions_end_in_a_value_or_one_error() {
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
}
