//! `cargo bench --bench loadgen -- <args>`: natsgate's load generator.
//!
//! See benches/README.md for the scenarios and results, and
//! `cargo bench --bench loadgen -- --help` for every option.

use natsgate_test_support::loadgen;

use clap::Parser;
use loadgen::options::Options;
use std::process::ExitCode;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` to every bench target; it means
    // nothing here.
    let args = std::env::args().filter(|a| a != "--bench");
    let opts = Options::parse_from(args);
    match loadgen::sys::raise_nofile_limit() {
        Ok(limit) if !opts.quiet => eprintln!("loadgen: open-files limit {limit}"),
        Ok(_) => {}
        Err(e) => eprintln!("loadgen: cannot raise the open-files limit: {e}"),
    }
    if let Some(cpu) = opts.pin_self {
        // Pinned before the runtime starts, so every worker thread inherits it.
        if let Err(e) = loadgen::sys::pin_to_cpu(cpu) {
            eprintln!("loadgen: cannot pin to CPU {cpu}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(nice) = opts.nice {
        if let Err(e) = loadgen::sys::own_cpu_group(nice) {
            eprintln!("loadgen: cannot set the autogroup's nice to {nice}: {e}");
        }
        // Before the runtime starts, so every worker thread inherits it.
        if let Err(e) = loadgen::sys::set_nice(nice) {
            eprintln!("loadgen: cannot set nice {nice}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let threads =
        opts.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(loadgen::run(&opts));
    // Client tasks may still hold sockets; do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(reports) => {
            println!("{}", loadgen::report::table(&reports));
            if opts.json {
                for r in &reports {
                    println!("{}", serde_json::to_string(r).unwrap_or_default());
                }
            }
            if reports.iter().all(|r| r.ok()) {
                ExitCode::SUCCESS
            } else {
                eprintln!("loadgen: loss, failed connections or publish errors (see above)");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
