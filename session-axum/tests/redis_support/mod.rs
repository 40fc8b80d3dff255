//! Redis helpers shared by the HTTP tests of the Redis-backed stores.

#![allow(dead_code, unreachable_pub)]

#[path = "../../../session-core/tests/support/redis_server.rs"]
pub mod redis_server;

use std::sync::Arc;

use crate::support::{BoxFuture, StoreProbe};

/// A key prefix of one test on one Redis. Every key under it is deleted
/// when this is dropped, even after a failed test, and nothing else is.
pub struct PrefixedKeys {
    pub url: String,
    pub prefix: String,
}

impl PrefixedKeys {
    /// Takes a fresh prefix, labelled `label`, on the Redis at `url`.
    pub fn new(url: String, label: &str) -> Self {
        Self {
            url,
            prefix: redis_server::unique_prefix(label),
        }
    }

    /// Returns a probe that counts the session keys under the prefix.
    /// Session keys are `<prefix>{<id>}`; index keys are
    /// `<prefix>identity:{..}` and are not counted.
    pub fn probe(&self) -> Arc<dyn StoreProbe> {
        Arc::new(KeyProbe {
            url: self.url.clone(),
            pattern: format!("{}{{*", self.prefix),
        })
    }
}

impl Drop for PrefixedKeys {
    fn drop(&mut self) {
        let mut connection = redis_server::admin(&self.url);
        redis_server::delete_matching(&mut connection, &format!("{}*", self.prefix));
    }
}

struct KeyProbe {
    url: String,
    pattern: String,
}

impl StoreProbe for KeyProbe {
    fn count(&self) -> BoxFuture<'_, u64> {
        let url = self.url.clone();
        let pattern = self.pattern.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut connection = redis_server::admin(&url);
                redis_server::scan(&mut connection, &pattern).len() as u64
            })
            .await
            .unwrap()
        })
    }
}
