//! Example applications for `session-axum`.
//!
//! The applications live in this library so that their integration tests can
//! start them in-process; each `examples/*.rs` file is a thin `main`.
//!
//! - [`login_app`]: a complete sign-in flow with flash messages, guards and
//!   a role-restricted page, on the memory, cookie or Redis store. Run it
//!   with `cargo run --example login_app`.

pub mod login_app;
