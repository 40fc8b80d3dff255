//! The app over `session-axum`'s `SessionLayer`.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use session_axum::{CurrentSession, SessionLayer};

use super::{LoginParams, UNTOUCHED_BODY};
use crate::BenchUser;

/// Environment variable that turns the layer's caches off.
pub const NO_CACHES_ENV: &str = "SESSION_BENCH_NO_CACHES";

/// Builds the app over `layer`. The handlers use `CurrentSession::data` and
/// `CurrentSession::update`, the accessors an application would reach for
/// first.
///
/// With `SESSION_BENCH_NO_CACHES=1` the layer's verified-id and record caches
/// are turned off, to measure what a request costs when both miss, as with
/// many more active sessions than cache slots.
pub fn router(layer: SessionLayer<BenchUser>) -> Router {
    let layer = if std::env::var_os(NO_CACHES_ENV).is_some_and(|value| value == "1") {
        layer.verified_id_cache(0).record_cache(0)
    } else {
        layer
    };
    Router::new()
        .route("/login", post(login))
        .route("/read", get(read))
        .route("/write", post(write))
        .route("/untouched", get(|| async { UNTOUCHED_BODY }))
        .layer(layer)
}

async fn login(
    session: CurrentSession<BenchUser>,
    Query(params): Query<LoginParams>,
) -> &'static str {
    let mut user = BenchUser::sample();
    if let Some(id) = params.user {
        user.user_id = Some(id);
    }
    session.set(user);
    "ok"
}

async fn read(session: CurrentSession<BenchUser>) -> Result<String, StatusCode> {
    if !session.exists() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    Ok(session.data().name)
}

async fn write(session: CurrentSession<BenchUser>) -> Result<String, StatusCode> {
    if !session.exists() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let visits = session.update(|user| {
        user.visits += 1;
        user.visits
    });
    Ok(visits.to_string())
}
