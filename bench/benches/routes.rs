//! In-process cost per request of each scenario and route.
//!
//! Each iteration sends one request through `Router::oneshot` on a
//! current-thread tokio runtime, the same runtime for every scenario. The
//! session is created once before measuring and its cookie goes with every
//! request. Bench ids are `ROUTE/SCENARIO`, for example `read/ours-memory`;
//! `cargo run -p session-bench --bin summary` turns the results into ratios.
//!
//! With `SESSION_BENCH_QUICK=1` (set by `cargo xtask bench --quick`) each
//! bench warms up for 0.2 s and measures for 0.8 s, overriding criterion's
//! command-line times, and draws no plots. That keeps the quick run of all
//! scenarios and routes under a minute on a 2-core machine.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use session_bench::scenario::request;
use session_bench::{BenchApp, BenchEnv, Route, Scenario};
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// Environment variable that selects the short run.
const QUICK_ENV: &str = "SESSION_BENCH_QUICK";

fn quick() -> bool {
    std::env::var_os(QUICK_ENV).is_some_and(|value| value == "1")
}

fn config() -> Criterion {
    let criterion = Criterion::default();
    if quick() {
        criterion.without_plots().nresamples(10_000)
    } else {
        criterion
    }
}

struct Prepared {
    app: BenchApp,
    cookie: String,
}

/// Builds the app, creates its session and checks every route once.
async fn prepare(scenario: Scenario, env: &BenchEnv) -> Result<Prepared, String> {
    let app = BenchApp::build(scenario, env).await?;
    let cookie = app.login(None).await?;
    for route in Route::ALL {
        app.check(route, &cookie).await?;
    }
    Ok(Prepared { app, cookie })
}

fn routes(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime starts");
    let env = BenchEnv::from_env();

    let mut prepared = Vec::new();
    for scenario in Scenario::ALL {
        match runtime.block_on(prepare(scenario, &env)) {
            Ok(ready) => prepared.push(ready),
            // A missing Redis skips its scenarios; anything else is a bug.
            Err(error) if scenario.uses_redis() => {
                eprintln!("skipping {scenario}: {error} (set REDIS_URL to a reachable Redis)");
            }
            Err(error) => panic!("could not prepare {scenario}: {error}"),
        }
    }

    for route in Route::ALL {
        let mut group = c.benchmark_group(route.name());
        if quick() {
            // Group settings take precedence over criterion's command-line options.
            group.warm_up_time(Duration::from_millis(200));
            group.measurement_time(Duration::from_millis(800));
        }
        for ready in &prepared {
            group.bench_function(ready.app.scenario.name(), |bencher| {
                bencher.to_async(&runtime).iter(|| async {
                    let response = ready
                        .app
                        .router
                        .clone()
                        .oneshot(request(route, &ready.cookie))
                        .await;
                    black_box(response)
                });
            });
        }
        group.finish();
    }

    cleanup(&runtime, &prepared);
}

fn cleanup(runtime: &Runtime, prepared: &[Prepared]) {
    for ready in prepared {
        if let Err(error) = runtime.block_on(
            ready
                .app
                .delete_sessions(std::slice::from_ref(&ready.cookie)),
        ) {
            eprintln!("{error}");
        }
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = routes
}
criterion_main!(benches);
