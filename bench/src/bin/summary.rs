//! Ratio tables from the criterion results of `benches/routes.rs`:
//! `cargo run -p session-bench --bin summary`.
//!
//! Reads `target/criterion/ROUTE/SCENARIO/new/estimates.json` (criterion's
//! output of the last run), prints a Markdown table of the mean time per
//! request with ratios to plain axum and to tower-sessions, and writes it to
//! `target/session-bench/criterion.md`.

use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize;
use session_bench::report::{self, ratio, Table};
use session_bench::{Route, Scenario};

#[derive(Debug, Deserialize)]
struct Estimates {
    mean: Estimate,
}

#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
    confidence_interval: ConfidenceInterval,
}

#[derive(Debug, Deserialize)]
struct ConfidenceInterval {
    lower_bound: f64,
    upper_bound: f64,
}

/// Reads the mean estimate (nanoseconds) of one bench, if criterion ran it.
fn read_estimate(
    criterion_dir: &Path,
    route: Route,
    scenario: Scenario,
) -> Result<Option<Estimate>, String> {
    let path = criterion_dir
        .join(route.name())
        .join(scenario.name())
        .join("new")
        .join("estimates.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("could not read {}: {error}", path.display())),
    };
    let estimates: Estimates = serde_json::from_str(&text)
        .map_err(|error| format!("could not parse {}: {error}", path.display()))?;
    Ok(Some(estimates.mean))
}

fn main() -> ExitCode {
    let criterion_dir = report::target_dir().join("criterion");
    let mut table = Table::new(&[
        "route",
        "scenario",
        "mean µs/request (95% CI)",
        "÷ axum",
        "÷ tower-sessions",
        "over axum, µs",
    ]);
    let mut found = 0;
    for route in Route::ALL {
        let mut estimates = Vec::new();
        for scenario in Scenario::ALL {
            match read_estimate(&criterion_dir, route, scenario) {
                Ok(Some(estimate)) => estimates.push((scenario, estimate)),
                Ok(None) => {}
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let mean_of = |wanted: Scenario| {
            estimates
                .iter()
                .find(|(scenario, _)| *scenario == wanted)
                .map(|(_, estimate)| estimate.point_estimate)
        };
        let axum = mean_of(Scenario::Axum);
        for (scenario, estimate) in &estimates {
            found += 1;
            let mean = estimate.point_estimate;
            let interval = &estimate.confidence_interval;
            table.row(vec![
                route.name().to_owned(),
                scenario.name().to_owned(),
                format!(
                    "{:.2} ({:.2}-{:.2})",
                    mean / 1000.0,
                    interval.lower_bound / 1000.0,
                    interval.upper_bound / 1000.0
                ),
                ratio(mean, axum),
                ratio(mean, scenario.tower_counterpart().and_then(mean_of)),
                axum.map(|axum| format!("{:+.2}", (mean - axum) / 1000.0))
                    .unwrap_or_else(|| "-".to_owned()),
            ]);
        }
    }
    if found == 0 {
        eprintln!(
            "error: no criterion results under {}; run `cargo bench -p session-bench --bench routes` first",
            criterion_dir.display()
        );
        return ExitCode::FAILURE;
    }

    let markdown = format!(
        "## In-process cost per request (criterion, Router + oneshot, current-thread runtime)\n\n\
         Machine: {}.\n\n{}",
        report::machine_description(),
        table.render()
    );
    println!("{markdown}");
    let folder = report::output_dir();
    let path = folder.join("criterion.md");
    if let Err(error) =
        std::fs::create_dir_all(&folder).and_then(|()| std::fs::write(&path, &markdown))
    {
        eprintln!("error: could not write {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("summary: written to {}", path.display());
    ExitCode::SUCCESS
}
