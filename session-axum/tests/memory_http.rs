//! The HTTP cases against the memory store, through the real layer.

mod support;

use std::sync::Arc;

use session_axum::session_core::SessionStore;
use session_axum::{ManualClock, MemoryStore};
use support::{BoxFuture, StoreFactory, StoreProbe};

struct MemoryFactory;

struct MemoryProbe(MemoryStore);

impl StoreProbe for MemoryProbe {
    fn count(&self) -> BoxFuture<'_, u64> {
        Box::pin(async move { self.0.stats().live_sessions })
    }
}

impl StoreFactory for MemoryFactory {
    fn make(&self, clock: ManualClock) -> BoxFuture<'_, (Arc<dyn SessionStore>, Arc<dyn StoreProbe>)> {
        Box::pin(async move {
            let store = MemoryStore::builder().clock(Arc::new(clock)).build();
            let probe: Arc<dyn StoreProbe> = Arc::new(MemoryProbe(store.clone()));
            (Arc::new(store) as Arc<dyn SessionStore>, probe)
        })
    }
}

http_cases!(MemoryFactory);
