//! `#[derive(Session)]`.
