//! Cost of the cookie store per request: sealing a record of about 200
//! bytes into a complete `Set-Cookie` header, and loading it back from the
//! cookie value (grammar check, AES-256-GCM open, record decode, expiry
//! check; no revocation store).
//!
//! Run with `cargo bench -p session-core --bench cookie_store`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use serde::{Deserialize, Serialize};

use session_core::{CookieStore, ManualClock, SessionConfig, SessionData, SessionRecord};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Visitor {
    user_id: Option<u64>,
    name: String,
    cart: Vec<String>,
}

impl SessionData for Visitor {
    fn identity(&self) -> Option<String> {
        self.user_id.map(|id| id.to_string())
    }
}

fn cookie_store(c: &mut Criterion) {
    let clock = ManualClock::starting_now();
    let config = SessionConfig::builder()
        .secret([42u8; 32])
        .clock(clock)
        .build()
        .expect("benchmark configuration is valid");
    let store = CookieStore::new(config.clone());

    let data = Visitor {
        user_id: Some(1_234_567),
        name: "Ada Lovelace".to_owned(),
        cart: (0..10).map(|i| format!("product-sku-{i:05}")).collect(),
    };
    let record = SessionRecord::new(
        config.ids().generate(),
        data,
        config.clock().now(),
        config.idle_timeout(),
        config.absolute_lifetime(),
        false,
    );
    let encoded_len = record
        .to_stored(config.codec())
        .expect("record encodes")
        .payload
        .len();
    assert!(
        (150..=250).contains(&encoded_len),
        "the benchmark record should encode to about 200 bytes, got {encoded_len}"
    );

    let header = store.seal(&record, None).expect("record fits the budget");
    let value = header["id=".len()..]
        .split(';')
        .next()
        .expect("header has a value")
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime starts");

    c.bench_function("cookie store seal ~200-byte record", |b| {
        b.iter(|| store.seal(black_box(&record), None).unwrap())
    });
    c.bench_function("cookie store load ~200-byte record", |b| {
        b.to_async(&runtime).iter(|| async {
            store
                .load::<Visitor>(black_box(&value))
                .await
                .unwrap()
                .unwrap()
        })
    });
}

criterion_group!(benches, cookie_store);
criterion_main!(benches);
