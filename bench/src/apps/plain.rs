//! Plain axum without sessions: the baseline of every ratio.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;

use super::UNTOUCHED_BODY;
use crate::BenchUser;

#[derive(Clone)]
struct AppState {
    user: Arc<BenchUser>,
    visits: Arc<AtomicU64>,
}

/// Builds the app: `/read` returns the sample user's name from memory and
/// `/write` increments a shared counter.
pub fn router() -> Router {
    let state = AppState {
        user: Arc::new(BenchUser::sample()),
        visits: Arc::new(AtomicU64::new(0)),
    };
    Router::new()
        .route("/login", post(|| async { "ok" }))
        .route("/read", get(read))
        .route("/write", post(write))
        .route("/untouched", get(|| async { UNTOUCHED_BODY }))
        .with_state(state)
}

async fn read(State(state): State<AppState>) -> String {
    state.user.name.clone()
}

async fn write(State(state): State<AppState>) -> String {
    let visits = state.visits.fetch_add(1, Ordering::Relaxed) + 1;
    visits.to_string()
}
