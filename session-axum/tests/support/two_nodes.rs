//! Two instances of the reference app on one clustered store, and the
//! cross-node scenarios that both the standalone and the Redis Cluster
//! tests run on them.

use axum::http::StatusCode;
use session_axum::ClusteredRedisStore;

use super::Harness;

/// Nodes A and B: each its own layer, store, cache and node id, on one
/// Redis and one invalidation channel.
pub struct NodePair {
    pub a: Harness,
    pub b: Harness,
    pub a_store: ClusteredRedisStore,
    pub b_store: ClusteredRedisStore,
}

impl NodePair {
    /// Sets the roles of `user` at the source of truth both nodes consult.
    pub fn set_roles(&self, user: &str, roles: &[&str]) {
        let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
        for node in [&self.a, &self.b] {
            node.roles
                .lock()
                .unwrap()
                .insert(user.to_owned(), roles.clone());
        }
    }

    /// Logs in on A, serves the session twice on A (the second time from
    /// its cache) and returns the cookie.
    async fn login_cached_on_a(&self, round: usize) -> String {
        let cookie = self.a.login("user-a", None).await.cookie();
        assert_eq!(self.a.get("/me", Some(&cookie)).await.body, "user-a");
        let hits = self.a_store.stats().hits;
        assert_eq!(self.a.get("/me", Some(&cookie)).await.body, "user-a");
        assert_eq!(
            self.a_store.stats().hits,
            hits + 1,
            "round {round}: A serves the session from its cache"
        );
        cookie
    }

    /// With fenced reads, a logout on B is honoured by A on the very next
    /// request, although A had the session cached.
    pub async fn logout_on_b_applies_on_a_at_once(&self, rounds: usize) {
        for round in 0..rounds {
            let cookie = self.login_cached_on_a(round).await;

            let logout = self.b.post("/logout", Some(&cookie)).await;
            assert_eq!(logout.status, StatusCode::SEE_OTHER);
            assert_eq!(
                self.a.get("/me", Some(&cookie)).await.status,
                StatusCode::UNAUTHORIZED,
                "round {round}: the next request on A"
            );
        }
    }

    /// Without fenced reads, a logout on B reaches A as an invalidation
    /// once A has applied what was published before (`catch_up`), not
    /// through the cache TTL.
    pub async fn logout_on_b_reaches_a_as_an_invalidation(&self, rounds: usize) {
        for round in 0..rounds {
            let cookie = self.login_cached_on_a(round).await;

            let invalidations = self.a_store.stats().invalidations;
            assert_eq!(
                self.b.post("/logout", Some(&cookie)).await.status,
                StatusCode::SEE_OTHER
            );
            self.a_store.catch_up().await.unwrap();
            assert_eq!(
                self.a_store.stats().invalidations,
                invalidations + 1,
                "round {round}: A applied the logout's invalidation"
            );
            assert_eq!(
                self.a.get("/me", Some(&cookie)).await.status,
                StatusCode::UNAUTHORIZED,
                "round {round}: the next request on A"
            );
        }
    }

    /// Checks that a write on A is read on B, and B's write back on A.
    pub async fn write_on_a_is_read_on_b(&self) {
        let cookie = self.a.post("/cart/add?item=x", None).await.cookie();
        assert_eq!(self.a.get("/cart", Some(&cookie)).await.body, "[x]");
        assert_eq!(self.b.get("/cart", Some(&cookie)).await.body, "[x]");

        assert_eq!(
            self.b.post("/cart/add?item=y", Some(&cookie)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(self.a.get("/cart", Some(&cookie)).await.body, "[x,y]");
        assert_eq!(
            self.a.post("/locale?l=fr", Some(&cookie)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(self.b.get("/locale", Some(&cookie)).await.body, "fr");
    }
}
