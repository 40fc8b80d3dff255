//! Per-session locks, so that requests of one session on one node run their
//! load-modify-save cycles one after another instead of losing updates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use session_core::{IdBuildHasher, SessionId};
use tokio::sync::OwnedMutexGuard;

/// Purge idle entries once the table has grown by this many since the last purge.
const PURGE_EVERY: usize = 1024;

type SessionLock = Arc<tokio::sync::Mutex<()>>;

#[derive(Debug, Default)]
pub(crate) struct LockTable {
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Entries stay after their request so that a session's next request
    /// reuses the lock instead of allocating one; idle ones are purged.
    locks: HashMap<SessionId, SessionLock, IdBuildHasher>,
    inserted_since_purge: usize,
}

impl LockTable {
    /// Waits up to `timeout` for the lock of `id`. Returns `None` on timeout.
    pub(crate) async fn acquire(
        &self,
        id: &SessionId,
        timeout: Duration,
    ) -> Option<OwnedMutexGuard<()>> {
        let lock = self.lock_for(id);
        // The usual case, a free lock, needs no timer.
        match lock.clone().try_lock_owned() {
            Ok(guard) => Some(guard),
            Err(_) => tokio::time::timeout(timeout, lock.lock_owned()).await.ok(),
        }
    }

    fn lock_for(&self, id: &SessionId) -> SessionLock {
        let mut table = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(lock) = table.locks.get(id) {
            return lock.clone();
        }

        let lock = SessionLock::default();
        table.locks.insert(id.clone(), lock.clone());
        table.inserted_since_purge += 1;
        if table.inserted_since_purge >= PURGE_EVERY {
            // Only the table holds an idle lock: no request waits on it.
            table.locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            table.inserted_since_purge = 0;
        }
        lock
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().locks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_acquire_waits_for_the_first() {
        let table = LockTable::default();
        let id = SessionId::random();
        let first = table
            .acquire(&id, Duration::from_secs(1))
            .await
            .expect("free lock");
        assert!(
            table
                .acquire(&id, Duration::from_millis(20))
                .await
                .is_none(),
            "held lock times out"
        );
        drop(first);
        assert!(table.acquire(&id, Duration::from_secs(1)).await.is_some());
    }

    #[tokio::test]
    async fn dead_entries_are_purged() {
        let table = LockTable::default();
        for _ in 0..(PURGE_EVERY * 3) {
            let guard = table
                .acquire(&SessionId::random(), Duration::from_secs(1))
                .await;
            drop(guard);
        }
        assert!(table.len() <= PURGE_EVERY, "{} entries left", table.len());
    }
}
