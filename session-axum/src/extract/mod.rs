//! Extractors.

pub(crate) mod current;
pub(crate) mod flash;
