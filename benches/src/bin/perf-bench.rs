//! `perf-bench`: runs the selected benchmark groups, prints a table and writes
//! `report.json` and `report.md`. Usually run as `cargo xtask bench [--quick] [FILTER...]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use perfkit_benches::groups::groups;
use perfkit_benches::harness::{Bench, MachineInfo, Report, RATIO_LEGEND};

const USAGE: &str = "usage: perf-bench [--quick] [--out DIR] [--list] [FILTER...]
  --quick     short samples and small workloads (whole suite < 3 minutes on 2 cores)
  --out DIR   where to write report.json and report.md (default: target/perf-report)
  --list      list the groups and exit
  FILTER      run only groups whose name contains one of the filters";

fn main() -> ExitCode {
    // Some groups re-execute this binary as a child process (a worker, a clean-memory run).
    if let Some(code) = perfkit_benches::groups::run_child_if_requested() {
        return code;
    }
    let command: Vec<String> = std::env::args().collect();
    let mut quick = false;
    let mut list = false;
    let mut out = PathBuf::from("target/perf-report");
    let mut filters = Vec::new();
    let mut args = command.iter().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--list" => list = true,
            "--out" => match args.next() {
                Some(dir) => out = PathBuf::from(dir),
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            // Cargo passes `--bench` when run through `cargo bench`; ignore it.
            "--bench" => {}
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other if other.starts_with('-') => {
                eprintln!("perf-bench: unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
            filter => filters.push(filter.to_string()),
        }
    }

    let all = groups();
    if list {
        for g in &all {
            println!("{:<28} {}", g.name, g.about);
        }
        return ExitCode::SUCCESS;
    }
    if !all.iter().any(|g| g.matches(&filters)) {
        eprintln!("perf-bench: no group matches {filters:?}; try --list");
        return ExitCode::from(2);
    }

    let started = Instant::now();
    let machine = MachineInfo::collect();
    let mut bench = Bench::new(quick);
    let ran = bench.run(&all, &filters);
    let report = Report {
        schema: Report::SCHEMA,
        command,
        quick,
        filters,
        groups: ran,
        machine,
        duration_secs: started.elapsed().as_secs_f64(),
        ratio_legend: RATIO_LEGEND.into(),
        rows: bench.rows().to_vec(),
        skips: bench.skips().to_vec(),
    };
    print!("\n{}", report.to_table());
    if let Err(e) = report.write_to(&out) {
        eprintln!(
            "perf-bench: could not write reports to {}: {e}",
            out.display()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {} and {} ({:.1}s)",
        out.join("report.json").display(),
        out.join("report.md").display(),
        report.duration_secs
    );
    if bench.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("perf-bench: failed groups: {}", bench.failures().join(", "));
        ExitCode::FAILURE
    }
}
