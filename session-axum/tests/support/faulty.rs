//! A store wrapper that fails or delays operations on command, and the
//! write-fault cases every server-side store runs through it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use session_axum::session_core::{
    CreateOutcome, SaveOutcome, SessionId, SessionStore, StoreError, StoredSession,
};
use session_axum::ManualClock;
use time::OffsetDateTime;

use super::{id_of, Harness};

/// Which operations fail, and how long every operation takes.
#[derive(Debug, Default)]
pub struct Faults {
    pub reads: AtomicBool,
    pub writes: AtomicBool,
    pub latency_ms: AtomicU64,
    pub calls: AtomicU64,
}

/// Wraps a store and fails or delays its operations on command.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    pub inner: Arc<dyn SessionStore>,
    pub faults: Arc<Faults>,
}

impl FaultyStore {
    async fn enter(&self, write: bool) -> Result<(), StoreError> {
        self.faults.calls.fetch_add(1, Ordering::SeqCst);
        let latency = self.faults.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let failing = if write {
            &self.faults.writes
        } else {
            &self.faults.reads
        };
        if failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                message: "injected fault".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for FaultyStore {
    async fn load(&self, id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        self.enter(false).await?;
        self.inner.load(id).await
    }
    async fn create(&self, session: &StoredSession) -> Result<CreateOutcome, StoreError> {
        self.enter(true).await?;
        self.inner.create(session).await
    }
    async fn save(
        &self,
        session: &StoredSession,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.enter(true).await?;
        self.inner.save(session, expected).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        at: Option<OffsetDateTime>,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.enter(true).await?;
        self.inner.touch(id, at, expected).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.enter(true).await?;
        self.inner.delete(id).await
    }
    async fn list_by_identity(&self, identity: &str) -> Result<Vec<SessionId>, StoreError> {
        self.enter(false).await?;
        self.inner.list_by_identity(identity).await
    }
    async fn delete_by_identity(&self, identity: &str) -> Result<usize, StoreError> {
        self.enter(true).await?;
        self.inner.delete_by_identity(identity).await
    }
}

/// Wraps `inner` and builds the reference app over it.
pub fn faulty_harness(inner: Arc<dyn SessionStore>, clock: ManualClock) -> (Harness, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let store = FaultyStore {
        inner,
        faults: faults.clone(),
    };
    (Harness::with_store(store, clock, |b| b), faults)
}

/// A failed write during rotation keeps the old session and sends no
/// cookie for an id that was never stored.
pub async fn failed_rotation_keeps_the_old_session(
    inner: Arc<dyn SessionStore>,
    clock: ManualClock,
) {
    let (h, faults) = faulty_harness(inner.clone(), clock);
    let s1 = h.login("user-a", None).await.cookie();
    assert_eq!(
        h.post("/cart/add?item=x", Some(&s1)).await.status,
        StatusCode::NO_CONTENT
    );

    faults.writes.store(true, Ordering::SeqCst);
    let relogin = h.login("user-a", Some(&s1)).await;
    assert_eq!(relogin.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        relogin.body,
        "Session store is unavailable, please retry later"
    );
    assert!(
        relogin.set_cookies().is_empty(),
        "no cookie names an id that was never stored"
    );

    faults.writes.store(false, Ordering::SeqCst);
    assert_eq!(h.get("/cart", Some(&s1)).await.body, "[x]");
    assert_eq!(
        inner.list_by_identity("user-a").await.unwrap(),
        vec![id_of(&s1)]
    );
}

/// With slow writes, the write still finishes before the redirect
/// leaves, so the next page always sees it.
pub async fn slow_writes_finish_before_the_redirect(
    inner: Arc<dyn SessionStore>,
    clock: ManualClock,
) {
    let (h, faults) = faulty_harness(inner, clock);
    faults.latency_ms.store(30, Ordering::SeqCst);
    for _ in 0..10 {
        let login = h.login("user-a", None).await;
        assert_eq!(login.status, StatusCode::SEE_OTHER);
        assert_eq!(h.get("/me", Some(&login.cookie())).await.body, "user-a");
    }
}
