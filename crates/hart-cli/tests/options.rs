//! Every option of every subcommand, read from `--help` (so commands added
//! later are covered too), fed a bad value: the binary must end with HART's
//! one `error:` line and exit status 1 — never clap's multi-line usage
//! message and exit 2 — and a value clap rejects must be named with its option.

mod common;
use common::{assert_one_line_error, hart, stderr, stdout};

const BAD: &str = "%bad%";
/// Ends parsing with an error whatever the option before it accepted, so no command runs.
const STOP: &str = "--zz-not-an-option";

fn subcommands() -> Vec<String> {
    let help = stdout(&hart(&["--help"]));
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// `--name` of each option that takes a value (`--name <VALUE>` in the help).
fn value_options(sub: &str) -> Vec<String> {
    let o = hart(&[sub, "--help"]);
    assert!(o.status.success(), "{sub} --help: {}", stderr(&o));
    stdout(&o)
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-")
                .filter(|r| r.chars().nth(1) == Some(','))
                .map_or(l, |r| r[2..].trim_start());
            let rest = l.strip_prefix("--")?;
            let (name, after) = rest.split_once(' ')?;
            after.starts_with('<').then(|| format!("--{name}"))
        })
        .collect()
}

fn exit_code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn every_option_family_fails_with_one_line_and_status_1() {
    let subs = subcommands();
    assert!(subs.len() >= 10, "subcommands from --help: {subs:?}");
    let cases: Vec<(String, String)> = subs
        .iter()
        .flat_map(|sub| value_options(sub).into_iter().map(move |opt| (sub.clone(), opt)))
        .collect();
    // `--opt=VALUE`: clap checks a value given this way before it meets STOP.
    // Each run loads libtorch (about a second): four at a time.
    let outputs: Vec<std::process::Output> = std::thread::scope(|s| {
        let runs: Vec<_> = cases
            .chunks(cases.len().div_ceil(4).max(1))
            .map(|chunk| {
                s.spawn(move || {
                    let run = |(sub, opt): &(String, String)| hart(&[sub, &format!("{opt}={BAD}"), STOP]);
                    chunk.iter().map(run).collect::<Vec<_>>()
                })
            })
            .collect();
        runs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut rejected = std::collections::BTreeSet::new();
    let mut tried = 0;
    for ((sub, opt), o) in cases.iter().zip(&outputs) {
        assert_one_line_error(o, "");
        assert_eq!(exit_code(o), Some(1), "hart {sub} {opt}={BAD}: {}", stderr(o));
        let err = stderr(o);
        if err.contains(BAD) {
            assert!(
                err.contains(opt.as_str()),
                "hart {sub} {opt}={BAD}: the error must name the option: {err}"
            );
            rejected.insert(opt.trim_start_matches('-').to_string());
        } else {
            assert!(err.contains(STOP), "hart {sub} {opt}={BAD}: {err}");
        }
        tried += 1;
    }
    assert!(tried > 50, "only {tried} options found in the help texts");
    // The families the issue names, plus numbers and the enums HART parses.
    for family in [
        "optimizer",
        "split",
        "format",
        "batch-size",
        "engine",
        "nan-policy",
        "scope",
        "jobs",
        "seed",
    ] {
        assert!(
            rejected.contains(family),
            "--{family} {BAD} was not rejected by name: {rejected:?}"
        );
    }
}

#[test]
fn out_of_range_numbers_missing_values_and_unknown_commands_are_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["sweep", "--jobs=0", STOP], "--jobs"),
        (&["train", "--epochs=-1", STOP], "--epochs"),
        (&["eval", "--batch-size=1e99", STOP], "--batch-size"),
        (&["eval", "--split"], "--split"),
        (&["sweep"], "--out"),
        (&["frobnicate"], "frobnicate"),
        (&[], "subcommand"),
        (&["eval", "--nan-policy", "first"], "first"),
    ];
    for (args, needle) in cases {
        let o = hart(args);
        assert_one_line_error(&o, needle);
        assert_eq!(exit_code(&o), Some(1), "hart {args:?}: {}", stderr(&o));
    }
    // Help and version still print normally and succeed.
    for args in [&["--help"][..], &["--version"], &["sweep", "--help"]] {
        let o = hart(args);
        assert!(o.status.success() && !stdout(&o).is_empty(), "hart {args:?}");
    }
}
