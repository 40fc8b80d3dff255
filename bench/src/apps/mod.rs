//! The benchmark app of each scenario: the same four routes over a different
//! session layer.
//!
//! - `POST /login?user=N` stores [`BenchUser::sample`](crate::BenchUser::sample)
//!   with `user_id` N (default the sample's id). It creates the sessions that
//!   the other routes use.
//! - `GET /read` loads the session and returns the user's name, or 401
//!   without a session.
//! - `POST /write` increments `visits` and returns the new count, or 401
//!   without a session.
//! - `GET /untouched` never touches the session.

pub mod ours;
pub mod plain;
pub mod tower;

use serde::Deserialize;

/// Query of `POST /login`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginParams {
    pub(crate) user: Option<u64>,
}

/// Body of `GET /untouched` in every scenario.
pub const UNTOUCHED_BODY: &str = "untouched";
