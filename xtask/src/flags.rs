//! Command-line parsing for `cargo xtask`.

use std::fmt;

/// Usage text printed by `cargo xtask help` and after a usage error.
pub(crate) const HELP: &str = "\
Usage: cargo xtask <TASK> [OPTIONS]

Tasks:
  test [--no-fmt] [--no-clippy]
      Run every check, stopping at the first failure:
        1. cargo fmt --all -- --check          (skipped with --no-fmt)
        2. cargo clippy --workspace --all-targets --all-features -- -D warnings
                                               (skipped with --no-clippy)
        3. make sure a Redis is reachable (see Redis below)
        4. cargo test --workspace --all-features, with REDIS_URL set
  bench [--quick]
      Run every bench target of the workspace
      (cargo bench --workspace --all-features --bench '*'), with REDIS_URL set,
      then the ratio table (session-bench's `summary`, written to
      target/session-bench/criterion.md) and the loopback load test
      (session-bench's `loadgen`, written to target/session-bench/loadgen.md).
      --quick passes `--warm-up-time 1 --measurement-time 2` (seconds) to
      criterion, shortens the route benches further and runs the load test
      once with short phases: a less precise run for routine checks.
  redis-up
      Print the URL of a reachable Redis on stdout. If the task had to start a
      private redis-server, it keeps running until you press Ctrl-C.
  help, -h, --help
      Print this help.

Redis:
  The test, bench and redis-up tasks send PING to 127.0.0.1:6379. If the
  reply is PONG they use redis://127.0.0.1:6379. Otherwise they start a
  private redis-server on a free port on 127.0.0.1, with no
  persistence and its working directory and log under target/xtask-redis/,
  and stop it when the task ends, whether it passed or failed.

Environment:
  CARGO                      cargo binary to run (cargo sets it; default: cargo)
  XTASK_REDIS_PROBE_PORT     port on 127.0.0.1 to probe instead of 6379; point it
                             at a port where nothing listens to force the
                             private redis-server path
  SESSION_TEST_REDIS_SERVER  redis-server binary for the private server (default:
                             the one on PATH). If unset, xtask sets it for
                             `cargo test` and `cargo bench` to the redis-server
                             on PATH, so that Redis tests can start their own
                             servers.
";

/// A task selected on the command line, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    Help,
    Test(TestOptions),
    Bench(BenchOptions),
    RedisUp,
}

impl Task {
    /// Returns the task name as typed on the command line.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Task::Help => "help",
            Task::Test(_) => "test",
            Task::Bench(_) => "bench",
            Task::RedisUp => "redis-up",
        }
    }
}

/// Options of `cargo xtask test`. Both checks run by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TestOptions {
    pub(crate) fmt: bool,
    pub(crate) clippy: bool,
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BenchOptions {
    pub(crate) quick: bool,
}

/// A command line that does not match the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UsageError {
    MissingTask,
    UnknownTask(String),
    UnknownOption { task: &'static str, option: String },
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::MissingTask => write!(f, "missing task name"),
            UsageError::UnknownTask(task) => write!(f, "unknown task `{task}`"),
            UsageError::UnknownOption { task, option } => {
                write!(f, "unknown option `{option}` for task `{task}`")
            }
        }
    }
}

/// Parses the arguments that follow `cargo xtask`.
///
/// `-h` or `--help` anywhere selects [`Task::Help`], so that asking for help never
/// runs a task.
pub(crate) fn parse<I>(args: I) -> Result<Task, UsageError>
where
    I: IntoIterator,
    I::Item: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    if args.iter().any(|arg| arg == "-h" || arg == "--help") {
        return Ok(Task::Help);
    }

    let Some((task, options)) = args.split_first() else {
        return Err(UsageError::MissingTask);
    };

    match task.as_str() {
        "help" => Ok(Task::Help),
        "test" => parse_test(options).map(Task::Test),
        "bench" => parse_bench(options).map(Task::Bench),
        "redis-up" => reject_all_options("redis-up", options).map(|()| Task::RedisUp),
        other => Err(UsageError::UnknownTask(other.to_owned())),
    }
}

fn parse_test(options: &[String]) -> Result<TestOptions, UsageError> {
    let mut parsed = TestOptions {
        fmt: true,
        clippy: true,
    };
    for option in options {
        match option.as_str() {
            "--no-fmt" => parsed.fmt = false,
            "--no-clippy" => parsed.clippy = false,
            other => return Err(unknown_option("test", other)),
        }
    }
    Ok(parsed)
}

fn parse_bench(options: &[String]) -> Result<BenchOptions, UsageError> {
    let mut parsed = BenchOptions::default();
    for option in options {
        match option.as_str() {
            "--quick" => parsed.quick = true,
            other => return Err(unknown_option("bench", other)),
        }
    }
    Ok(parsed)
}

fn reject_all_options(task: &'static str, options: &[String]) -> Result<(), UsageError> {
    match options.first() {
        Some(option) => Err(unknown_option(task, option)),
        None => Ok(()),
    }
}

fn unknown_option(task: &'static str, option: &str) -> UsageError {
    UsageError::UnknownOption {
        task,
        option: option.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::PROBE_PORT_ENV;

    const ALL_CHECKS: TestOptions = TestOptions {
        fmt: true,
        clippy: true,
    };

    #[test]
    fn test_without_options_runs_all_checks() {
        assert_eq!(parse(["test"]), Ok(Task::Test(ALL_CHECKS)));
    }

    #[test]
    fn test_skip_options_in_any_order() {
        let both_skipped = Task::Test(TestOptions {
            fmt: false,
            clippy: false,
        });
        assert_eq!(
            parse(["test", "--no-fmt", "--no-clippy"]),
            Ok(both_skipped.clone())
        );
        assert_eq!(parse(["test", "--no-clippy", "--no-fmt"]), Ok(both_skipped));
    }

    #[test]
    fn test_skip_one_check() {
        let no_fmt = TestOptions {
            fmt: false,
            clippy: true,
        };
        let no_clippy = TestOptions {
            fmt: true,
            clippy: false,
        };
        assert_eq!(parse(["test", "--no-fmt"]), Ok(Task::Test(no_fmt)));
        assert_eq!(parse(["test", "--no-clippy"]), Ok(Task::Test(no_clippy)));
    }

    #[test]
    fn test_rejects_unknown_option() {
        assert_eq!(
            parse(["test", "--quick"]),
            Err(UsageError::UnknownOption {
                task: "test",
                option: "--quick".to_owned(),
            })
        );
    }

    #[test]
    fn bench_quick_flag() {
        assert_eq!(
            parse(["bench"]),
            Ok(Task::Bench(BenchOptions { quick: false }))
        );
        assert_eq!(
            parse(["bench", "--quick"]),
            Ok(Task::Bench(BenchOptions { quick: true }))
        );
    }

    #[test]
    fn bench_rejects_unknown_option() {
        assert_eq!(
            parse(["bench", "--no-fmt"]),
            Err(UsageError::UnknownOption {
                task: "bench",
                option: "--no-fmt".to_owned(),
            })
        );
    }

    #[test]
    fn redis_up_takes_no_options() {
        assert_eq!(parse(["redis-up"]), Ok(Task::RedisUp));
        assert_eq!(
            parse(["redis-up", "--port"]),
            Err(UsageError::UnknownOption {
                task: "redis-up",
                option: "--port".to_owned(),
            })
        );
    }

    #[test]
    fn help_forms() {
        assert_eq!(parse(["help"]), Ok(Task::Help));
        assert_eq!(parse(["-h"]), Ok(Task::Help));
        assert_eq!(parse(["--help"]), Ok(Task::Help));
        assert_eq!(parse(["test", "--help"]), Ok(Task::Help));
        assert_eq!(parse(["bench", "--bogus", "-h"]), Ok(Task::Help));
    }

    #[test]
    fn missing_and_unknown_task() {
        assert_eq!(parse(Vec::<String>::new()), Err(UsageError::MissingTask));
        assert_eq!(
            parse(["deploy"]),
            Err(UsageError::UnknownTask("deploy".to_owned()))
        );
    }

    #[test]
    fn usage_error_messages() {
        assert_eq!(UsageError::MissingTask.to_string(), "missing task name");
        assert_eq!(
            UsageError::UnknownTask("deploy".to_owned()).to_string(),
            "unknown task `deploy`"
        );
        assert_eq!(
            unknown_option("bench", "--fast").to_string(),
            "unknown option `--fast` for task `bench`"
        );
    }

    #[test]
    fn help_names_probe_port_variable() {
        assert!(HELP.contains(PROBE_PORT_ENV));
    }
}
