//! `hart sweep` and `hart merge` end to end: outputs, resume after `kill -9`
//! at several points, shards merged back into the unsharded table, refusal
//! to merge mismatched shards, and one-line errors on bad input.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hart::faults::output::read_table;

mod common;
use common::{assert_one_line_error, hart, random_model, stderr, sweep_args};

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "hart failed: {}", stderr(&o));
    o
}

fn parts(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("parts")).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "csv"))
        })
        .count()
    })
}

#[test]
fn resume_after_kill_shards_and_merge_reproduce_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let m = random_model(dir.path(), "mlp");
    let m = m.to_str().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();

    let whole = p("whole");
    ok(hart(&sweep_args(m, &whole, &[])));
    let reference = std::fs::read(Path::new(&whole).join("flips.csv")).unwrap();
    let rows = read_table(&Path::new(&whole).join("flips.csv")).unwrap();
    assert_eq!(rows.len(), 1280 * 12, "one row per flip");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&whole).join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["flips"].as_u64(), Some(1280 * 12));
    assert!(
        summary["erratic_bits"].as_u64().unwrap() > 0,
        "exponent flips of fc3 should be erratic"
    );

    // kill -9 at several points, each time resuming the same command.
    let killed = p("killed");
    let total_units = parts(Path::new(&whole));
    for stop_at in [1, total_units / 2, total_units - 1] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hart"))
            .args(sweep_args(m, &killed, &[]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while parts(Path::new(&killed)) < stop_at && t0.elapsed() < Duration::from_secs(120) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    ok(hart(&sweep_args(m, &killed, &[])));
    assert!(
        std::fs::read(Path::new(&killed).join("flips.csv")).unwrap() == reference,
        "resumed table differs"
    );

    // Three shards merged give the same table; Parquet holds the same rows.
    let shard_dirs: Vec<String> = (0..3).map(|i| p(&format!("shard{i}"))).collect();
    for (i, d) in shard_dirs.iter().enumerate() {
        ok(hart(&sweep_args(m, d, &["--shard", &format!("{i}/3")])));
    }
    let merged = p("merged");
    let mut args = vec!["merge"];
    args.extend(shard_dirs.iter().map(String::as_str));
    args.extend(["--out", &merged, "--format", "csv"]);
    ok(hart(&args));
    assert!(
        std::fs::read(Path::new(&merged).join("flips.csv")).unwrap() == reference,
        "merged table differs"
    );
    let pq = p("pq");
    args = vec!["merge"];
    args.extend(shard_dirs.iter().map(String::as_str));
    args.extend(["--out", &pq]);
    ok(hart(&args));
    assert_eq!(read_table(&Path::new(&pq).join("flips.parquet")).unwrap(), rows);

    // A shard of another configuration, or a missing shard, is refused.
    let other = p("other");
    ok(hart(&sweep_args(m, &other, &["--shard", "2/3", "--threshold", "0.2"])));
    assert_one_line_error(
        &hart(&["merge", &shard_dirs[0], &shard_dirs[1], &other, "--out", &p("bad")]),
        "different configuration",
    );
    assert_one_line_error(
        &hart(&["merge", &shard_dirs[0], &shard_dirs[1], "--out", &p("bad")]),
        "shard 2/3 is missing",
    );
    // Resuming into a directory of a different sweep is refused too.
    assert_one_line_error(
        &hart(&sweep_args(m, &whole, &["--threshold", "0.3"])),
        "different configuration",
    );
}

#[test]
fn sampling_reports_intervals_and_sample_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let m = random_model(dir.path(), "mlp");
    let out = dir.path().join("s");
    let o = ok(hart(&[
        "sweep",
        "--model",
        m.to_str().unwrap(),
        "--limit",
        "100",
        "--sample-params",
        "50",
        "--seed",
        "3",
        "--bits",
        "30,31",
        "--margin",
        "0.05",
        "--out",
        out.to_str().unwrap(),
    ]));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Leveugle"), "{text}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["flips"].as_u64(), Some(100));
    let ci = &s["estimate"]["erratic_fraction_ci"];
    let (lo, hi, p) = (
        ci[0].as_f64().unwrap(),
        ci[1].as_f64().unwrap(),
        s["estimate"]["erratic_fraction"].as_f64().unwrap(),
    );
    assert!(lo <= p && p <= hi && hi > lo, "{lo} {p} {hi}");
}

#[test]
fn bad_sweep_inputs_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let m = random_model(dir.path(), "resnet18-cifar");
    let m = m.to_str().unwrap();
    let out = dir.path().join("o");
    let out = out.to_str().unwrap();
    let faults = |name: &str, body: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, body).unwrap();
        f.to_str().unwrap().to_string()
    };
    let run = |f: &str| hart(&["sweep", "--model", m, "--limit", "4", "--faults", f, "--out", out]);
    assert_one_line_error(
        &run(&faults("a.csv", "param,index,bit\nconv1.weight,0,3\nfc9.weight,0,1\n")),
        "line 3: unknown parameter",
    );
    assert_one_line_error(&run(&faults("b.csv", "conv1.weight,576,3\n")), "index 576 out of range");
    assert_one_line_error(&run(&faults("c.csv", "conv1.weight,0,32\n")), "bit 32 outside 0-31");
    assert_one_line_error(&run(&faults("d.csv", "bn1.num_batches_tracked,0,1\n")), "not float32");
    assert_one_line_error(&run(&faults("e.csv", "conv1.weight;0;1\n")), "line 1");
    assert_one_line_error(
        &hart(&["sweep", "--model", m, "--limit", "4", "--shard", "5/4", "--out", out]),
        "5/4",
    );
    assert_one_line_error(
        &hart(&["sweep", "--model", m, "--limit", "4", "--bits", "33", "--out", out]),
        "33",
    );
    assert_one_line_error(
        &hart(&[
            "sweep",
            "--model",
            m,
            "--limit",
            "4",
            "--params",
            "nothing.*",
            "--out",
            out,
        ]),
        "nothing",
    );
}
