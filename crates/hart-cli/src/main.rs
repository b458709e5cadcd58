//! `hart`: the Hessian-Aware Resilience Toolkit command line.

mod commands;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = match commands::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_tracing(cli.verbose);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes joined, never a backtrace.
            // Library errors already embed their source; skip causes the message repeats.
            let mut msg = String::new();
            for cause in e.chain().map(|c| c.to_string()) {
                if !msg.contains(&cause) {
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&cause);
                }
            }
            eprintln!("error: {}", msg.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// clap's errors in HART's convention: one `error:` line naming the option
/// and the value, exit status 1 (clap's own are several lines and exit 2).
/// `--help` and `--version` print as clap prints them.
fn usage_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("error: a subcommand is required (see `hart --help`)");
        }
        _ => eprintln!("error: {}", one_line(&e.render().to_string())),
    }
    ExitCode::FAILURE
}

/// clap's message without its `error:` prefix, usage block and help hint.
fn one_line(rendered: &str) -> String {
    let lines: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let msg = lines.join(" ");
    msg.strip_prefix("error: ").unwrap_or(&msg).to_string()
}

/// Sweeps and training allocate and free the same large activation buffers
/// thousands of times; glibc's defaults hand blocks over its dynamic mmap
/// threshold back to the kernel on every free, and page faults on the fresh
/// pages then took a quarter of a sweep's profile. Keep them in the heap.
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator tunables; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HART_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
