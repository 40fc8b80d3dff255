//! `cargo xtask bench`: every criterion bench of the workspace, then the ratio
//! summary and the loopback load test of `session-bench`, against a Redis.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::flags::BenchOptions;
use crate::process::{cargo_binary, project_root, CargoCommand, Steps};
use crate::redis;

/// Criterion options for `--quick`: 1 s warm-up and 2 s measurement per bench, and
/// no plots, which take criterion longer to draw than such a short bench takes to run.
const QUICK_CRITERION_ARGS: &[&str] =
    &["--warm-up-time", "1", "--measurement-time", "2", "--noplot"];

/// Folder of the reports that `session-bench` writes, relative to the workspace root.
const REPORT_FOLDER: &str = "target/session-bench";

/// Runs the bench targets of all workspace crates, then `session-bench`'s
/// `summary` (ratio tables from criterion's results) and `loadgen` (the
/// loopback load test).
///
/// Only targets declared as benches run (`--bench '*'`). Without that filter,
/// `cargo bench` would also run the libtest harness of every library, which rejects
/// criterion options such as `--warm-up-time`.
///
/// `cargo bench` also builds the binaries of every package whose benches it runs,
/// so `summary` and `loadgen` are started from `target/release` as it left them.
/// `cargo run` would build them again with other features, because `--workspace`
/// turns on dev-dependency features that a single package does not.
pub(crate) fn run(options: BenchOptions) -> Result<(), String> {
    let mut steps = Steps::new("bench", 5);

    steps.start("look for bench targets");
    let bench_count = count_bench_targets()?;
    if bench_count == 0 {
        // `cargo bench --bench '*'` fails when no target matches, so stop here.
        eprintln!("No bench targets in the workspace; nothing to run");
        return Ok(());
    }
    eprintln!("Found {bench_count} bench target(s)");

    steps.start("make sure a Redis is reachable");
    let redis = redis::ensure()?;

    let mut bench = CargoCommand::new(&["bench", "--workspace", "--all-features", "--bench", "*"]);
    if options.quick {
        // session-bench reads this and shortens its route benches further.
        bench = bench
            .env("SESSION_BENCH_QUICK", "1")
            .args(&["--"])
            .args(QUICK_CRITERION_ARGS);
    }
    for (key, value) in redis.env_for_tests() {
        bench = bench.env(key, &value);
    }
    steps.start(&bench.to_string());
    bench.run("see the build errors or failing bench above")?;

    let summary = bench_binary("summary");
    steps.start(&summary.display().to_string());
    run_program(
        &summary,
        &[],
        &[],
        "the criterion results are under target/criterion",
    )?;

    let loadgen = bench_binary("loadgen");
    let loadgen_args: &[&str] = if options.quick { &["--quick"] } else { &[] };
    let loadgen_env = redis.env_for_tests();
    steps.start(&format!("{} {}", loadgen.display(), loadgen_args.join(" ")));
    run_program(
        &loadgen,
        loadgen_args,
        &loadgen_env,
        "see the failed scenario above",
    )?;

    eprintln!();
    eprintln!("Criterion reports: target/criterion/report/index.html");
    eprintln!("Ratio table: {REPORT_FOLDER}/criterion.md");
    eprintln!("Load test: {REPORT_FOLDER}/loadgen.md and loadgen.json");
    Ok(())
}

/// Returns the path of a binary built by `cargo bench`: `target/release/NAME`, or
/// under `$CARGO_TARGET_DIR` when it is set.
fn bench_binary(name: &str) -> PathBuf {
    let target = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => project_root().join(dir),
        None => project_root().join("target"),
    };
    target.join("release").join(name)
}

/// Runs `program` in the workspace root with extra environment and waits for it.
///
/// # Errors
///
/// Returns a message naming the program if it could not start or exited
/// unsuccessfully, followed by `hint`.
fn run_program(
    program: &Path,
    args: &[&str],
    envs: &[(&'static str, String)],
    hint: &str,
) -> Result<(), String> {
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(key, value)| (key, value)))
        .current_dir(project_root())
        .status()
        .map_err(|error| format!("could not start {}: {error}", program.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed with {status}; {hint}",
            program.display()
        ))
    }
}

/// Counts the bench targets of the workspace members, from `cargo metadata`.
fn count_bench_targets() -> Result<usize, String> {
    let output = Command::new(cargo_binary())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(project_root())
        .output()
        .map_err(|error| format!("could not start `cargo metadata`: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata --no-deps --format-version 1` failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let metadata = String::from_utf8_lossy(&output.stdout);
    Ok(count_targets_of_kind(&metadata, "bench"))
}

/// Counts the targets whose kind list is exactly `[kind]` in `cargo metadata` JSON.
///
/// NOTE: this is a text search, not a JSON parser. It relies on cargo printing the
/// metadata without spaces, as cargo 1.95 does. The `workspace_metadata_is_compact`
/// test fails if that changes.
fn count_targets_of_kind(metadata: &str, kind: &str) -> usize {
    metadata.matches(&format!(r#""kind":["{kind}"]"#)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_bench_kinds() {
        let metadata = r#"{"packages":[{"name":"a","targets":[
            {"kind":["lib"],"name":"a"},
            {"kind":["bench"],"name":"crypto"},
            {"kind":["test"],"name":"bench_like"},
            {"kind":["bench"],"name":"store"}]}]}"#;
        assert_eq!(count_targets_of_kind(metadata, "bench"), 2);
        assert_eq!(count_targets_of_kind(metadata, "lib"), 1);
        assert_eq!(count_targets_of_kind(r#"{"packages":[]}"#, "bench"), 0);
    }

    #[test]
    fn workspace_metadata_is_compact() {
        // The workspace always has library targets, so finding none means the text
        // search no longer matches cargo's output.
        let output = Command::new(cargo_binary())
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(project_root())
            .output()
            .expect("start cargo metadata");
        assert!(output.status.success(), "cargo metadata failed");
        let metadata = String::from_utf8_lossy(&output.stdout);
        assert!(count_targets_of_kind(&metadata, "lib") >= 1);
    }
}
