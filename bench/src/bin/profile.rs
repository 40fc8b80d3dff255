//! Runs one scenario and route in a loop, for profilers:
//! `valgrind --tool=callgrind --toggle-collect='*measured_requests*' target/release/profile ours-memory read 10000`.
//!
//! The requests go through `Router::oneshot` on a current-thread runtime,
//! as in the criterion benches. Only `measured_requests` sends the measured
//! requests, so a profiler can collect that function alone and divide by
//! the iteration count to get a cost per request.

use std::hint::black_box;
use std::process::ExitCode;

use axum::extract::Request;
use session_bench::scenario::request;
use session_bench::{BenchApp, BenchEnv, Route, Scenario};
use tokio::runtime::Runtime;
use tower::util::MapRequestLayer;
use tower::ServiceExt;

const USAGE: &str = "Usage: profile SCENARIO ROUTE ITERATIONS [--identity-layer]
  SCENARIO          axum, ours-memory, ours-cookie, ours-redis, tower-memory,
                    tower-memory-signed or tower-redis
  ROUTE             read, write or untouched
  ITERATIONS        requests to send after one warm-up request
  --identity-layer  wrap the app in a layer that passes requests through
                    unchanged, to measure what axum's layering alone costs";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().and_then(|name| Scenario::from_name(name));
    let route = args.get(1).and_then(|name| Route::from_name(name));
    let iterations = args.get(2).and_then(|count| count.parse::<u64>().ok());
    let identity_layer = match args.get(3).map(String::as_str) {
        None => false,
        Some("--identity-layer") => true,
        Some(other) => {
            eprintln!("error: unknown argument {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (Some(scenario), Some(route), Some(iterations)) = (scenario, route, iterations) else {
        eprintln!("error: expected SCENARIO ROUTE ITERATIONS\n\n{USAGE}");
        return ExitCode::from(2);
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime starts");
    let outcome = runtime
        .block_on(async {
            let mut app = BenchApp::build(scenario, &BenchEnv::from_env()).await?;
            if identity_layer {
                app.router = app
                    .router
                    .layer(MapRequestLayer::new(|request: Request| request));
            }
            let cookie = app.login(None).await?;
            app.check(route, &cookie).await?;
            Ok::<_, String>((app, cookie))
        })
        .and_then(|(app, cookie)| {
            measured_requests(&runtime, &app, route, &cookie, iterations);
            runtime.block_on(async {
                app.check(route, &cookie).await?;
                app.delete_sessions(std::slice::from_ref(&cookie)).await
            })
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[inline(never)]
fn measured_requests(
    runtime: &Runtime,
    app: &BenchApp,
    route: Route,
    cookie: &str,
    iterations: u64,
) {
    runtime.block_on(async {
        for _ in 0..iterations {
            let response = app.router.clone().oneshot(request(route, cookie)).await;
            black_box(response).ok();
        }
    });
}
