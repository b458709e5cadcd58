//! Benchmark harness: repeated timings summarised by their median, and
//! ratios against a baseline timed in the same run (these machines are noisy,
//! so absolute seconds from different runs do not compare).

use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub name: String,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub runs: usize,
}

/// Runs `f` once to warm up, then `runs` times, and summarises.
pub fn time<F: FnMut()>(name: &str, runs: usize, mut f: F) -> Timing {
    f();
    let mut t: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    Timing {
        name: name.to_string(),
        median_s: median(&t),
        min_s: t[0],
        max_s: t[t.len() - 1],
        runs: t.len(),
    }
}

pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// A benchmark result: a candidate against its baseline, timed interleaved.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub what: String,
    pub baseline: Timing,
    pub candidate: Timing,
    /// baseline median / candidate median: above 1 means the candidate is faster.
    pub speedup: f64,
}

impl Comparison {
    pub fn new(what: &str, baseline: Timing, candidate: Timing) -> Self {
        let speedup = baseline.median_s / candidate.median_s;
        Comparison {
            what: what.to_string(),
            baseline,
            candidate,
            speedup,
        }
    }
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
