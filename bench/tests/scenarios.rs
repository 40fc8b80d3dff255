//! Every scenario serves the benchmark routes correctly, in process and over
//! TCP, and the Redis counters see what each store sends.
//!
//! The Redis tests need the Redis at `$REDIS_URL` (default
//! `redis://127.0.0.1:6379`), as `cargo xtask test` provides.

use axum::http::header;
use session_bench::client::{encode_request, Connection};
use session_bench::load::{login_over_tcp, Server};
use session_bench::redis_stats::measure_round_trips;
use session_bench::scenario::{request, PLAIN_AXUM_COOKIE};
use session_bench::{BenchApp, BenchEnv, BenchUser, Route, Scenario};
use tower::ServiceExt;

/// The scenarios that need no Redis.
const IN_PROCESS: [Scenario; 5] = [
    Scenario::Axum,
    Scenario::OursMemory,
    Scenario::OursCookie,
    Scenario::TowerMemory,
    Scenario::TowerMemorySigned,
];

async fn set_cookie_of(app: &BenchApp, route: Route, cookie: &str) -> Option<String> {
    let response = app
        .router
        .clone()
        .oneshot(request(route, cookie))
        .await
        .expect("the router never fails");
    assert_eq!(response.status(), 200, "{} {}", app.scenario, route.path());
    response
        .headers()
        .get(header::SET_COOKIE)
        .map(|value| value.to_str().expect("ASCII cookie").to_owned())
}

#[tokio::test]
async fn every_route_answers_in_process() {
    for scenario in IN_PROCESS {
        let app = BenchApp::build(scenario, &BenchEnv::from_env())
            .await
            .unwrap();
        let cookie = app.login(None).await.unwrap();
        for route in Route::ALL {
            app.check(route, &cookie)
                .await
                .unwrap_or_else(|error| panic!("{error}"));
        }
    }
}

#[tokio::test]
async fn login_cookie_is_the_session_cookie() {
    for scenario in IN_PROCESS {
        let app = BenchApp::build(scenario, &BenchEnv::from_env())
            .await
            .unwrap();
        let cookie = app.login(None).await.unwrap();
        if scenario == Scenario::Axum {
            assert_eq!(cookie, PLAIN_AXUM_COOKIE);
        } else {
            assert!(cookie.starts_with("id="), "{scenario}: {cookie}");
            assert!(!cookie.contains(';'), "{scenario}: {cookie}");
        }
    }
}

#[tokio::test]
async fn untouched_route_sets_no_cookie() {
    for scenario in IN_PROCESS {
        let app = BenchApp::build(scenario, &BenchEnv::from_env())
            .await
            .unwrap();
        let cookie = app.login(None).await.unwrap();
        assert_eq!(
            set_cookie_of(&app, Route::Untouched, &cookie).await,
            None,
            "{scenario}"
        );
    }
}

#[tokio::test]
async fn read_sets_no_cookie() {
    for scenario in IN_PROCESS {
        let app = BenchApp::build(scenario, &BenchEnv::from_env())
            .await
            .unwrap();
        let cookie = app.login(None).await.unwrap();
        assert_eq!(
            set_cookie_of(&app, Route::Read, &cookie).await,
            None,
            "{scenario}"
        );
    }
}

#[tokio::test]
async fn write_changes_the_stored_user() {
    for scenario in IN_PROCESS
        .into_iter()
        .filter(|scenario| scenario.has_sessions())
    {
        let app = BenchApp::build(scenario, &BenchEnv::from_env())
            .await
            .unwrap();
        let mut cookie = app.login(None).await.unwrap();
        for expected in 1..=3u64 {
            let response = app
                .router
                .clone()
                .oneshot(request(Route::Write, &cookie))
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{scenario}");
            // The cookie store sends the changed record as a new cookie.
            if let Some(set_cookie) = response.headers().get(header::SET_COOKIE) {
                let set_cookie = set_cookie.to_str().unwrap();
                cookie = session_bench::scenario::cookie_pair(set_cookie).to_owned();
            }
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!(body, expected.to_string(), "{scenario}");
        }
    }
}

#[tokio::test]
async fn tcp_client_reads_every_route() {
    for scenario in [Scenario::Axum, Scenario::OursMemory, Scenario::TowerMemory] {
        let app = BenchApp::build(scenario, &BenchEnv::from_env())
            .await
            .unwrap();
        let server = Server::start(app.router.clone()).await.unwrap();
        let plain = (!scenario.has_sessions()).then_some(PLAIN_AXUM_COOKIE);
        let login = login_over_tcp(server.address(), 7, plain).await.unwrap();
        if scenario.has_sessions() {
            assert!(login.set_cookie_bytes > login.cookie.len(), "{scenario}");
        } else {
            assert_eq!(login.set_cookie_bytes, 0);
        }

        let mut connection = Connection::connect(server.address()).await.unwrap();
        for route in Route::ALL {
            let bytes = encode_request(route.method().as_str(), route.path(), Some(&login.cookie));
            for _ in 0..3 {
                let response = connection.send(&bytes).await.unwrap();
                assert_eq!(response.status, 200, "{scenario} {}", route.path());
                // tower-sessions re-sends its cookie, with a new Max-Age, on every change.
                let resends_cookie = scenario == Scenario::TowerMemory && route == Route::Write;
                assert_eq!(
                    response.set_cookie_bytes > 0,
                    resends_cookie,
                    "{scenario} {}",
                    route.path()
                );
                if route == Route::Read {
                    assert_eq!(response.body_len, BenchUser::sample().name.len());
                }
            }
        }
        drop(connection);
        server.stop().await;
    }
}

#[tokio::test]
async fn tower_redis_round_trips_are_counted() {
    let results = measure_round_trips(Scenario::TowerRedis, &BenchEnv::from_env(), 20)
        .await
        .unwrap();
    let trips = |route: Route| {
        results
            .iter()
            .find(|row| row.route == route.name())
            .unwrap()
            .round_trips_per_request
    };
    // tower-sessions-redis-store 0.16: GET to load, SET XX to save.
    assert_eq!(trips(Route::Read), 1.0);
    assert_eq!(trips(Route::Write), 2.0);
    assert_eq!(trips(Route::Untouched), 0.0);
}

#[tokio::test]
async fn ours_redis_reads_in_one_round_trip() {
    let results = measure_round_trips(Scenario::OursRedis, &BenchEnv::from_env(), 20)
        .await
        .unwrap();
    let row = |route: Route| {
        results
            .iter()
            .find(|row| row.route == route.name())
            .unwrap()
    };
    assert_eq!(row(Route::Read).round_trips_per_request, 1.0);
    assert_eq!(row(Route::Untouched).round_trips_per_request, 0.0);
    // Load, then one compare-and-set script.
    assert_eq!(row(Route::Write).round_trips_per_request, 2.0);
    assert_eq!(
        row(Route::Write).commands_per_request.get("evalsha"),
        Some(&1.0)
    );
}
