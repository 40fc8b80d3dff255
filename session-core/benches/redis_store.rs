//! Redis store round trips on `$REDIS_URL` (default `redis://127.0.0.1:6379`):
//! `load` and a compare-and-set `save` of a 256-byte session, plain and
//! sealed. Run with
//! `cargo bench -p session-core --features redis --bench redis_store`.
//!
//! The keys live under a prefix unique to the run and are deleted at the end.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use time::{Duration, OffsetDateTime};
use tokio::runtime::Runtime;

use session_core::{
    RedisStore, SaveOutcome, SessionConfig, SessionId, SessionStore, StoredSession,
};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn session() -> StoredSession {
    StoredSession {
        id: SessionId::random(),
        version: 1,
        expires_at: Some(OffsetDateTime::now_utc() + Duration::hours(1)),
        identity: Some("bench-user".to_owned()),
        payload: Bytes::from(vec![7u8; 256]),
    }
}

fn bench_store(c: &mut Criterion, runtime: &Runtime, name: &str, store: &RedisStore) {
    let session = session();
    runtime
        .block_on(store.create(&session))
        .expect("Redis at $REDIS_URL is reachable");
    let version = AtomicU64::new(1);

    let mut group = c.benchmark_group(format!("redis_store/{name}"));
    group.bench_function("load", |b| {
        b.to_async(runtime).iter(|| async {
            store
                .load(&session.id)
                .await
                .unwrap()
                .expect("the session is stored")
        })
    });
    group.bench_function("save", |b| {
        b.to_async(runtime).iter(|| async {
            let current = version.load(Ordering::Relaxed);
            let mut next = session.clone();
            next.version = current + 1;
            assert_eq!(
                store.save(&next, current).await.unwrap(),
                SaveOutcome::Saved
            );
            version.store(current + 1, Ordering::Relaxed);
        })
    });
    group.finish();

    runtime.block_on(store.delete(&session.id)).unwrap();
}

fn redis_store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let run = SessionId::random().encode();
    let prefix = format!("bench:{}:", &run[..12]);

    let plain = RedisStore::from_url(redis_url())
        .key_prefix(format!("{prefix}plain:"))
        .build()
        .unwrap();
    bench_store(c, &runtime, "plain", &plain);

    let config = SessionConfig::testing(b"redis store bench secret, 32 b!!")
        .build()
        .unwrap();
    let sealed = RedisStore::from_url(redis_url())
        .key_prefix(format!("{prefix}sealed:"))
        .encrypt_with(&config)
        .build()
        .unwrap();
    bench_store(c, &runtime, "sealed", &sealed);
}

criterion_group!(benches, redis_store);
criterion_main!(benches);
