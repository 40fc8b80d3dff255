//! Cost of the per-request cryptography: sealing and opening a 200-byte
//! record, drawing an id, and signing and verifying it for the cookie.
//!
//! Run with `cargo xtask bench` or `cargo bench -p session-core --bench crypto`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use session_core::{KeyRing, Purpose, Secret, SessionId};

fn crypto(c: &mut Criterion) {
    let ring = KeyRing::new(Secret::try_from_bytes(&[42u8; 32]).unwrap());
    let record = vec![7u8; 200];
    let token = ring.seal(Purpose::CookieStore, b"id", &record);
    let id = SessionId::random();
    let cookie = id.to_cookie_value(&ring, "id");

    c.bench_function("seal 200-byte record", |b| {
        b.iter(|| ring.seal(Purpose::CookieStore, b"id", black_box(&record)))
    });
    c.bench_function("open 200-byte record", |b| {
        b.iter(|| {
            ring.open(Purpose::CookieStore, b"id", black_box(&token))
                .unwrap()
        })
    });
    c.bench_function("generate session id", |b| b.iter(SessionId::random));
    c.bench_function("sign session id", |b| {
        b.iter(|| black_box(&id).to_cookie_value(&ring, "id"))
    });
    c.bench_function("verify signed session id", |b| {
        b.iter(|| SessionId::from_cookie_value(&ring, "id", black_box(&cookie)).unwrap())
    });
}

criterion_group!(benches, crypto);
criterion_main!(benches);
