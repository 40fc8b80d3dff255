//! Benchmarks of `session-axum` against plain axum and tower-sessions.
//!
//! Every scenario serves the same routes (see [`apps`]) with the same
//! payload ([`BenchUser`]). The criterion benches in `benches/routes.rs`
//! drive them in process with `oneshot`. The `loadgen` binary serves them on
//! 127.0.0.1 and drives them over TCP. The `summary` binary turns criterion's
//! results into ratio tables. `cargo xtask bench` runs all three.

pub mod apps;
pub mod client;
pub mod load;
pub mod memory;
pub mod payload;
pub mod redis_stats;
pub mod report;
pub mod rss;
pub mod scenario;

pub use payload::BenchUser;
pub use scenario::{BenchApp, BenchEnv, Route, Scenario};
