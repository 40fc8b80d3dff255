//! Loopback load test of every scenario: `cargo run --release -p session-bench --bin loadgen -- [--quick]`.
//!
//! For each scenario it serves the benchmark app on 127.0.0.1 with
//! `axum::serve`, creates one session per connection, and drives each route
//! with keep-alive HTTP/1.1 connections for a fixed time. It reports requests
//! per second, p50 and p99 latency and `Set-Cookie` bytes per response.
//!
//! It also measures the memory per live session of the in-process stores,
//! each in a child process, and the store round trips per request of the
//! Redis scenarios. Results go to stdout and to
//! `target/session-bench/loadgen.{md,json}`. Redis is `REDIS_URL` (default
//! `redis://127.0.0.1:6379`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use serde::Serialize;
use session_bench::load::{self, LoadOptions, LoadResult, Server};
use session_bench::memory::{self, MemoryResult};
use session_bench::redis_stats::{measure_round_trips, RoundTripResult};
use session_bench::report::{self, ratio, Table};
use session_bench::scenario::PLAIN_AXUM_COOKIE;
use session_bench::{BenchApp, BenchEnv, BenchUser, Route, Scenario};

const USAGE: &str = "\
Usage: loadgen [--quick] [OPTIONS]

Options:
  --quick                  short run for routine checks: 0.2 s warm-up and
                           0.5 s per route, one repetition, 200 requests per
                           round-trip count
  --connections N          concurrent keep-alive connections (default 16)
  --warm-up SECONDS        unrecorded time before each measurement (default 1)
  --duration SECONDS       measured time per scenario and route (default 5)
  --repeat N               repetitions of every measurement (default 2)
  --memory-sessions N      sessions created for the memory figure (default 100000)
  --round-trip-requests N  requests per route for the round-trip count (default 1000)
  --scenarios A,B          scenarios to run (default all): axum, ours-memory,
                           ours-cookie, ours-redis, tower-memory,
                           tower-memory-signed, tower-redis
  --routes A,B             routes of the load test (default all): read,
                           write, untouched
  --out DIR                report folder (default target/session-bench)
  -h, --help               print this help

Environment:
  REDIS_URL                Redis for the Redis scenarios (default
                           redis://127.0.0.1:6379); must be on loopback.
";

/// Hidden flag: measure memory for one scenario in this process and print JSON.
const MEMORY_CHILD_FLAG: &str = "--memory-child";

#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    load: LoadOptions,
    repeat: usize,
    memory_sessions: u64,
    round_trip_requests: u64,
    scenarios: Vec<Scenario>,
    routes: Vec<Route>,
    out: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            quick: false,
            load: LoadOptions {
                connections: 16,
                warm_up: Duration::from_secs(1),
                duration: Duration::from_secs(5),
            },
            repeat: 2,
            memory_sessions: 100_000,
            round_trip_requests: 1_000,
            scenarios: Scenario::ALL.to_vec(),
            routes: Route::ALL.to_vec(),
            out: report::output_dir(),
        }
    }
}

enum Invocation {
    Help,
    Run(Options),
    MemoryChild(Scenario, u64),
}

fn parse_args(args: Vec<String>) -> Result<Invocation, String> {
    if args.first().map(String::as_str) == Some(MEMORY_CHILD_FLAG) {
        let scenario = args.get(1).and_then(|name| Scenario::from_name(name));
        let sessions = args.get(2).and_then(|count| count.parse().ok());
        return match (scenario, sessions) {
            (Some(scenario), Some(sessions)) => Ok(Invocation::MemoryChild(scenario, sessions)),
            _ => Err(format!(
                "{MEMORY_CHILD_FLAG} expects a scenario name and a session count"
            )),
        };
    }

    let mut options = Options::default();
    if args.iter().any(|arg| arg == "--quick") {
        options.quick = true;
        options.load.warm_up = Duration::from_millis(200);
        options.load.duration = Duration::from_millis(500);
        options.repeat = 1;
        options.round_trip_requests = 200;
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} expects a value"));
        match arg.as_str() {
            "--quick" => {}
            "-h" | "--help" => return Ok(Invocation::Help),
            "--connections" => options.load.connections = parse_positive(&arg, &value(&arg)?)?,
            "--warm-up" => options.load.warm_up = parse_seconds(&arg, &value(&arg)?)?,
            "--duration" => options.load.duration = parse_seconds(&arg, &value(&arg)?)?,
            "--repeat" => options.repeat = parse_positive(&arg, &value(&arg)?)?,
            "--memory-sessions" => {
                options.memory_sessions = parse_positive(&arg, &value(&arg)?)? as u64
            }
            "--round-trip-requests" => {
                options.round_trip_requests = parse_positive(&arg, &value(&arg)?)? as u64
            }
            "--scenarios" => {
                let names = value(&arg)?;
                options.scenarios = names
                    .split(',')
                    .map(|name| {
                        Scenario::from_name(name.trim())
                            .ok_or_else(|| format!("unknown scenario {name:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--routes" => {
                let names = value(&arg)?;
                options.routes = names
                    .split(',')
                    .map(|name| {
                        Route::from_name(name.trim())
                            .ok_or_else(|| format!("unknown route {name:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--out" => options.out = PathBuf::from(value(&arg)?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Invocation::Run(options))
}

fn parse_positive(name: &str, text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(format!("{name} expects a positive integer, got {text:?}")),
    }
}

fn parse_seconds(name: &str, text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 600.0 => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(format!(
            "{name} expects seconds above 0 and at most 600, got {text:?}"
        )),
    }
}

/// Everything one `loadgen` run measured.
#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    load_average_at_end: String,
    quick: bool,
    options: LoadOptions,
    payload_json_bytes: usize,
    load: Vec<LoadRow>,
    login_set_cookie_bytes: BTreeMap<&'static str, usize>,
    memory: BTreeMap<&'static str, Vec<MemoryResult>>,
    round_trips: BTreeMap<&'static str, Vec<Vec<RoundTripResult>>>,
    skipped: Vec<String>,
}

#[derive(Debug, Serialize)]
struct LoadRow {
    scenario: &'static str,
    route: &'static str,
    runs: Vec<LoadResult>,
}

impl LoadRow {
    fn mean(&self, field: impl Fn(&LoadResult) -> f64) -> f64 {
        self.runs.iter().map(&field).sum::<f64>() / self.runs.len().max(1) as f64
    }

    fn spread(&self, field: impl Fn(&LoadResult) -> f64) -> (f64, f64) {
        let values: Vec<f64> = self.runs.iter().map(field).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }

    fn errors(&self) -> u64 {
        self.runs.iter().map(|run| run.errors).sum()
    }
}

fn main() -> ExitCode {
    let invocation = match parse_args(std::env::args().skip(1).collect()) {
        Ok(invocation) => invocation,
        Err(error) => {
            eprintln!("error: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match invocation {
        Invocation::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Invocation::MemoryChild(scenario, sessions) => run_memory_child(scenario, sessions),
        Invocation::Run(options) => run(options),
    }
}

fn run_memory_child(scenario: Scenario, sessions: u64) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime starts");
    match runtime.block_on(memory::measure(scenario, sessions)) {
        Ok(result) => {
            println!(
                "{}",
                serde_json::to_string(&result).expect("a memory result serialises")
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: Options) -> ExitCode {
    let started = Instant::now();
    let machine = report::machine_description();
    eprintln!("loadgen: {machine}");

    let memory = measure_memory(&options);

    // Two workers shared by the server and the load generator: the machine
    // this was written for has two cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a multi-thread tokio runtime starts");
    let env = BenchEnv::from_env();
    let mut skipped = Vec::new();
    let round_trips = runtime.block_on(measure_redis(&options, &env, &mut skipped));
    let (load, login_set_cookie_bytes) =
        runtime.block_on(measure_load(&options, &env, &mut skipped));

    let report = Report {
        machine,
        load_average_at_end: report::load_average(),
        quick: options.quick,
        options: options.load,
        payload_json_bytes: BenchUser::sample().json_len(),
        load,
        login_set_cookie_bytes,
        memory,
        round_trips,
        skipped,
    };
    let markdown = render(&report, &options);
    println!("{markdown}");
    if let Err(error) = write_outputs(&options.out, &markdown, &report) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "loadgen: finished in {:.1} s; report in {}",
        started.elapsed().as_secs_f64(),
        options.out.join("loadgen.md").display()
    );

    let failed_rows: Vec<_> = report.load.iter().filter(|row| row.errors() > 0).collect();
    if failed_rows.is_empty() {
        ExitCode::SUCCESS
    } else {
        for row in failed_rows {
            let first = row
                .runs
                .iter()
                .find_map(|run| run.first_error.clone())
                .unwrap_or_default();
            eprintln!(
                "error: {} {}: {} failed requests, first: {first}",
                row.scenario,
                row.route,
                row.errors()
            );
        }
        ExitCode::FAILURE
    }
}

/// Measures each in-process store in child processes, `repeat` times.
fn measure_memory(options: &Options) -> BTreeMap<&'static str, Vec<MemoryResult>> {
    let mut results = BTreeMap::new();
    let Ok(executable) = std::env::current_exe() else {
        eprintln!("loadgen: cannot find its own executable; skipping the memory figures");
        return results;
    };
    let memory_scenarios = options
        .scenarios
        .iter()
        .copied()
        .filter(|scenario| matches!(scenario, Scenario::OursMemory | Scenario::TowerMemory));
    for scenario in memory_scenarios {
        for _ in 0..options.repeat {
            eprintln!(
                "loadgen: memory of {scenario} with {} sessions",
                options.memory_sessions
            );
            let output = Command::new(&executable)
                .args([
                    MEMORY_CHILD_FLAG,
                    scenario.name(),
                    &options.memory_sessions.to_string(),
                ])
                .output();
            let parsed = match output {
                Ok(output) if output.status.success() => {
                    serde_json::from_slice::<MemoryResult>(&output.stdout)
                        .map_err(|error| format!("unreadable memory result: {error}"))
                }
                Ok(output) => Err(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
                Err(error) => Err(format!("could not start the memory child process: {error}")),
            };
            match parsed {
                Ok(result) => results
                    .entry(scenario.name())
                    .or_insert_with(Vec::new)
                    .push(result),
                Err(error) => eprintln!("loadgen: memory of {scenario} failed: {error}"),
            }
        }
    }
    results
}

async fn measure_redis(
    options: &Options,
    env: &BenchEnv,
    skipped: &mut Vec<String>,
) -> BTreeMap<&'static str, Vec<Vec<RoundTripResult>>> {
    let mut results = BTreeMap::new();
    for scenario in options
        .scenarios
        .iter()
        .copied()
        .filter(|scenario| scenario.uses_redis())
    {
        for _ in 0..options.repeat {
            eprintln!("loadgen: Redis round trips of {scenario}");
            match measure_round_trips(scenario, env, options.round_trip_requests).await {
                Ok(rows) => results
                    .entry(scenario.name())
                    .or_insert_with(Vec::new)
                    .push(rows),
                Err(error) => {
                    skipped.push(format!("round trips of {scenario}: {error}"));
                    break;
                }
            }
        }
    }
    results
}

type LoadOutcome = (Vec<LoadRow>, BTreeMap<&'static str, usize>);

async fn measure_load(options: &Options, env: &BenchEnv, skipped: &mut Vec<String>) -> LoadOutcome {
    let mut rows: Vec<LoadRow> = Vec::new();
    let mut login_bytes = BTreeMap::new();
    for repetition in 0..options.repeat {
        for &scenario in &options.scenarios {
            eprintln!(
                "loadgen: load of {scenario} (run {} of {})",
                repetition + 1,
                options.repeat
            );
            match load_scenario(scenario, env, options.load, &options.routes).await {
                Ok((set_cookie_bytes, results)) => {
                    login_bytes.insert(scenario.name(), set_cookie_bytes);
                    for (route, result) in results {
                        match rows.iter_mut().find(|row| {
                            row.scenario == scenario.name() && row.route == route.name()
                        }) {
                            Some(row) => row.runs.push(result),
                            None => rows.push(LoadRow {
                                scenario: scenario.name(),
                                route: route.name(),
                                runs: vec![result],
                            }),
                        }
                    }
                }
                Err(error) => {
                    let message = format!("load of {scenario}: {error}");
                    if !skipped.contains(&message) {
                        skipped.push(message);
                    }
                }
            }
        }
    }
    (rows, login_bytes)
}

/// Serves one scenario, creates a session per connection and drives each of `routes`.
async fn load_scenario(
    scenario: Scenario,
    env: &BenchEnv,
    options: LoadOptions,
    routes: &[Route],
) -> Result<(usize, Vec<(Route, LoadResult)>), String> {
    let app = BenchApp::build(scenario, env).await?;
    let server = Server::start(app.router.clone()).await?;
    let address = server.address();

    let plain_cookie = (!scenario.has_sessions()).then_some(PLAIN_AXUM_COOKIE);
    let mut cookies = Vec::with_capacity(options.connections);
    let mut login_set_cookie_bytes = 0;
    for user in 0..options.connections as u64 {
        let login = load::login_over_tcp(address, user, plain_cookie).await?;
        login_set_cookie_bytes = login.set_cookie_bytes;
        cookies.push(login.cookie);
    }

    let mut results = Vec::new();
    for &route in routes {
        results.push((route, load::run(address, route, &cookies, options).await));
    }

    server.stop().await;
    app.delete_sessions(&cookies).await?;
    Ok((login_set_cookie_bytes, results))
}

fn render(report: &Report, options: &Options) -> String {
    let mut text = String::new();
    text.push_str(&format!(
        "## Loopback load test{}\n\nMachine: {}. Load average at the end: {}.\n\
         {} connections, {:.1} s warm-up, {:.1} s measured per scenario and route, {} run(s) each; \
         server and load generator share one tokio runtime with 2 worker threads.\n\
         Payload: {} bytes as JSON.\n\n",
        if report.quick { " (--quick)" } else { "" },
        report.machine,
        report.load_average_at_end,
        options.load.connections,
        options.load.warm_up.as_secs_f64(),
        options.load.duration.as_secs_f64(),
        options.repeat,
        report.payload_json_bytes,
    ));
    text.push_str(&render_load(report));
    text.push_str("\n### Set-Cookie bytes of the login response (session creation)\n\n");
    let mut logins = Table::new(&["scenario", "Set-Cookie bytes"]);
    for (scenario, bytes) in &report.login_set_cookie_bytes {
        logins.row(vec![(*scenario).to_owned(), bytes.to_string()]);
    }
    text.push_str(&logins.render());
    text.push_str(&render_memory(report));
    text.push_str(&render_round_trips(report));
    if !report.skipped.is_empty() {
        text.push_str("\n### Skipped\n\n");
        for line in &report.skipped {
            text.push_str(&format!("- {line}\n"));
        }
    }
    text
}

fn render_load(report: &Report) -> String {
    let mut table = Table::new(&[
        "route",
        "scenario",
        "req/s (min-max)",
        "req/s ÷ axum",
        "req/s ÷ tower-sessions",
        "p50 µs",
        "p99 µs",
        "Set-Cookie B/response",
        "errors",
    ]);
    for route in Route::ALL {
        let rps_of = |scenario: Scenario| {
            report
                .load
                .iter()
                .find(|row| row.scenario == scenario.name() && row.route == route.name())
                .map(|row| row.mean(|run| run.requests_per_second))
        };
        for row in report.load.iter().filter(|row| row.route == route.name()) {
            let scenario = Scenario::from_name(row.scenario).expect("rows carry scenario names");
            let rps = row.mean(|run| run.requests_per_second);
            let (low, high) = row.spread(|run| run.requests_per_second);
            let tower = scenario.tower_counterpart().and_then(rps_of);
            table.row(vec![
                route.name().to_owned(),
                row.scenario.to_owned(),
                format!("{rps:.0} ({low:.0}-{high:.0})"),
                ratio(rps, rps_of(Scenario::Axum)),
                ratio(rps, tower),
                format!("{:.0}", row.mean(|run| run.p50_us)),
                format!("{:.0}", row.mean(|run| run.p99_us)),
                format!("{:.0}", row.mean(|run| run.set_cookie_bytes_per_response)),
                row.errors().to_string(),
            ]);
        }
    }
    table.render()
}

fn render_memory(report: &Report) -> String {
    let mut text = String::from(
        "\n### Memory per live session (resident set growth, fresh process per run)\n\n",
    );
    let mut table = Table::new(&["scenario", "sessions", "bytes per session, each run"]);
    for (scenario, runs) in &report.memory {
        let figures: Vec<String> = runs
            .iter()
            .map(|run| format!("{:.0}", run.bytes_per_session))
            .collect();
        let sessions = runs.first().map(|run| run.sessions).unwrap_or(0);
        table.row(vec![
            (*scenario).to_owned(),
            sessions.to_string(),
            figures.join(", "),
        ]);
    }
    text.push_str(&table.render());
    text
}

fn render_round_trips(report: &Report) -> String {
    let mut text = String::from(
        "\n### Redis per request (round trips counted by a proxy; commands from INFO commandstats, \
         which also counts commands run inside scripts and by other clients)\n\n",
    );
    let mut table = Table::new(&[
        "scenario",
        "route",
        "round trips, each run",
        "commands (first run)",
    ]);
    for (scenario, runs) in &report.round_trips {
        for route in Route::ALL {
            let per_run: Vec<&RoundTripResult> = runs
                .iter()
                .filter_map(|rows| rows.iter().find(|row| row.route == route.name()))
                .collect();
            let trips: Vec<String> = per_run
                .iter()
                .map(|row| format!("{:.2}", row.round_trips_per_request))
                .collect();
            let commands = per_run
                .first()
                .map(|row| {
                    row.commands_per_request
                        .iter()
                        .map(|(name, calls)| format!("{name} {calls:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            table.row(vec![
                (*scenario).to_owned(),
                route.name().to_owned(),
                trips.join(", "),
                commands,
            ]);
        }
    }
    text.push_str(&table.render());
    text
}

fn write_outputs(folder: &PathBuf, markdown: &str, report: &Report) -> Result<(), String> {
    std::fs::create_dir_all(folder)
        .map_err(|error| format!("could not create {}: {error}", folder.display()))?;
    let markdown_path = folder.join("loadgen.md");
    std::fs::write(&markdown_path, markdown)
        .map_err(|error| format!("could not write {}: {error}", markdown_path.display()))?;
    let json_path = folder.join("loadgen.json");
    let json = serde_json::to_string_pretty(report)
        .map_err(|error| format!("could not encode the report: {error}"))?;
    std::fs::write(&json_path, json)
        .map_err(|error| format!("could not write {}: {error}", json_path.display()))
}
