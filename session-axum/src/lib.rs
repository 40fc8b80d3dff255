//! axum integration.
