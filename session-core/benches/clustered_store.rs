//! The clustered Redis store on `$REDIS_URL` (default
//! `redis://127.0.0.1:6379`). It times a load served by the local cache,
//! with and without fenced reads, against a load from Redis, one at a time
//! and 64 at once. Then it measures the invalidation latency between two
//! nodes over 1 000 changes. Run with
//! `cargo bench -p session-core --features redis --bench clustered_store`.
//!
//! The invalidation latency is measured in one process, so both nodes read
//! the same monotonic clock: node A saves a session that node B has cached,
//! and B's event hook records when B evicts it. The report gives p50, p99
//! and the maximum, measured from the start of A's save and from its
//! return (the instant A's response could leave). The second figure is
//! negative when B evicted before A received Redis's reply.
//!
//! The keys live under a prefix unique to the run and are deleted at the end.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use time::{Duration, OffsetDateTime};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use session_core::{
    ClusteredRedisStore, RedisStore, SaveOutcome, SessionEvents, SessionId, SessionStore,
    StoreEvent, StoredSession,
};

const CHANGES: usize = 1_000;

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

/// Sends the instant of every eviction caused by another node.
#[derive(Debug)]
struct EvictionClock(mpsc::UnboundedSender<Instant>);

impl SessionEvents for EvictionClock {
    fn on_store_event(&self, event: &StoreEvent) {
        if *event == StoreEvent::CacheInvalidated {
            let _ = self.0.send(Instant::now());
        }
    }
}

async fn node(prefix: &str, node_id: &str, fenced: bool) -> ClusteredRedisStore {
    ClusteredRedisStore::from_url(redis_url())
        .key_prefix(prefix)
        .node_id(node_id)
        .fenced_reads(fenced)
        .build()
        .await
        .expect("Redis at $REDIS_URL is reachable")
}

fn bench_loads(c: &mut Criterion, runtime: &Runtime, prefix: &str) {
    let (bounded, fenced) = runtime.block_on(async {
        (
            node(prefix, "bench-bounded", false).await,
            node(prefix, "bench-fenced", true).await,
        )
    });
    let plain = RedisStore::from_url(redis_url())
        .key_prefix(prefix)
        .build()
        .unwrap();
    let session = session();
    runtime.block_on(async {
        bounded.create(&session).await.unwrap();
        fenced.load(&session.id).await.unwrap().unwrap();
    });

    let mut group = c.benchmark_group("clustered_store");
    group.bench_function("load/cache_hit", |b| {
        b.to_async(runtime)
            .iter(|| async { bounded.load(&session.id).await.unwrap().unwrap() })
    });
    group.bench_function("load/cache_hit_fenced", |b| {
        b.to_async(runtime)
            .iter(|| async { fenced.load(&session.id).await.unwrap().unwrap() })
    });
    group.bench_function("load/redis_store", |b| {
        b.to_async(runtime)
            .iter(|| async { plain.load(&session.id).await.unwrap().unwrap() })
    });

    // 64 loads at once: fenced hits share one fence, Redis loads each send
    // a GET.
    let stores: [(&str, &dyn SessionStore); 3] = [
        ("cache_hit", &bounded),
        ("cache_hit_fenced", &fenced),
        ("redis_store", &plain),
    ];
    for (name, store) in stores {
        group.bench_function(format!("load_64_concurrent/{name}"), |b| {
            b.to_async(runtime).iter(|| async {
                let loads = (0..64).map(|_| store.load(&session.id));
                futures_util::future::join_all(loads).await
            })
        });
    }
    group.finish();

    assert!(bounded.stats().hits > 0, "{:?}", bounded.stats());
    runtime.block_on(async {
        bounded.delete(&session.id).await.unwrap();
        bounded.shutdown().await.unwrap();
        fenced.shutdown().await.unwrap();
    });
}

/// Returns the p50, p99 and maximum of `samples`, in microseconds.
fn percentiles(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |quantile: f64| {
        let rank = ((samples.len() as f64 * quantile).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    (at(0.50), at(0.99), samples[samples.len() - 1])
}

fn micros(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(elapsed) => elapsed.as_secs_f64() * 1e6,
        None => -(earlier.duration_since(later).as_secs_f64() * 1e6),
    }
}

fn invalidation_latency(runtime: &Runtime, prefix: &str) {
    let (from_start, from_return) = runtime.block_on(async {
        let (evictions, mut evicted) = mpsc::unbounded_channel();
        let a = node(prefix, "bench-a", false).await;
        let b = ClusteredRedisStore::from_url(redis_url())
            .key_prefix(prefix)
            .node_id("bench-b")
            .events(Arc::new(EvictionClock(evictions)))
            .build()
            .await
            .expect("Redis at $REDIS_URL is reachable");

        let mut current = session();
        a.create(&current).await.unwrap();
        let mut from_start = Vec::with_capacity(CHANGES);
        let mut from_return = Vec::with_capacity(CHANGES);
        for _ in 0..CHANGES {
            assert!(b.load(&current.id).await.unwrap().is_some());
            let mut next = current.clone();
            next.version += 1;

            let started = Instant::now();
            assert_eq!(
                a.save(&next, current.version).await.unwrap(),
                SaveOutcome::Saved
            );
            let returned = Instant::now();
            let evicted_at = tokio::time::timeout(StdDuration::from_secs(5), evicted.recv())
                .await
                .expect("B evicts within 5 s")
                .expect("B's hook is alive");

            from_start.push(micros(evicted_at, started));
            from_return.push(micros(evicted_at, returned));
            current = next;
        }

        a.delete(&current.id).await.unwrap();
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
        (from_start, from_return)
    });

    let (p50, p99, max) = percentiles(from_start);
    println!(
        "clustered_store/invalidation_latency from save start, {CHANGES} changes: \
         p50 {p50:.0} us, p99 {p99:.0} us, max {max:.0} us"
    );
    let (p50, p99, max) = percentiles(from_return);
    println!(
        "clustered_store/invalidation_latency from save return, {CHANGES} changes: \
         p50 {p50:.0} us, p99 {p99:.0} us, max {max:.0} us"
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = SessionId::random().encode();
    let prefix = format!("bench:{}:", &run[..12]);

    let mut criterion = Criterion::default().configure_from_args();
    bench_loads(&mut criterion, &runtime, &prefix);
    criterion.final_summary();

    invalidation_latency(&runtime, &prefix);
}
