//! The Redis store against a real Redis: the shared server at `$REDIS_URL`
//! (default `redis://127.0.0.1:6379`) under a key prefix unique to the run,
//! and private servers where a test counts commands or keys.

#![cfg(feature = "redis")]

mod support {
    pub mod redis_server;
}

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use deadpool_redis::redis;
use time::Duration;

use session_core::conformance::{self, stored};
use session_core::{
    Clock, CreateOutcome, ManualClock, RedisConfigError, RedisStore, SaveOutcome, SessionConfig,
    SessionId, SessionStore, StoreError,
};
use support::redis_server::{admin, scan, shared_url, unique_prefix, Cleanup, RedisServer};

const SECRET: &[u8; 32] = b"redis store test secret, 32 b!!!";
const OTHER_SECRET: &[u8; 32] = b"another redis store secret 32 b!";

fn store(url: &str, prefix: &str, clock: &ManualClock) -> RedisStore {
    RedisStore::from_url(url)
        .key_prefix(prefix)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid store configuration")
}

fn sealing_config(secret: &[u8], clock: &ManualClock) -> SessionConfig {
    SessionConfig::testing(secret)
        .clock(clock.clone())
        .build()
        .expect("valid session configuration")
}

fn session_key(prefix: &str, id: &SessionId) -> String {
    format!("{prefix}{{{}}}", id.encode())
}

fn raw_get(url: &str, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query(&mut admin(url)).unwrap()
}

fn assert_backend_error<T: std::fmt::Debug>(result: Result<T, StoreError>, label: &str) {
    match result {
        Err(StoreError::Backend { .. }) => {}
        other => panic!("{label}: expected a Backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn conformance_suite_passes_on_redis() {
    let url = shared_url();
    let root = unique_prefix("conformance");
    let _cleanup = Cleanup::new(&url, &root);
    let check = AtomicUsize::new(0);

    conformance::run_all(|clock| {
        // Each check gets its own prefix, so identities do not leak between them.
        let prefix = format!("{root}{}:session:", check.fetch_add(1, Ordering::Relaxed));
        let store = store(&url, &prefix, clock);
        async move { store }
    })
    .await;
}

#[tokio::test]
async fn conformance_suite_passes_with_sealed_values() {
    let url = shared_url();
    let root = unique_prefix("sealed-conformance");
    let _cleanup = Cleanup::new(&url, &root);
    let check = AtomicUsize::new(0);

    conformance::run_all(|clock| {
        let prefix = format!("{root}{}:session:", check.fetch_add(1, Ordering::Relaxed));
        let store = RedisStore::from_url(&url)
            .key_prefix(prefix)
            .encrypt_with(&sealing_config(SECRET, clock))
            .build()
            .unwrap();
        async move { store }
    })
    .await;
}

#[tokio::test]
async fn sealed_values_hide_the_plaintext() {
    let url = shared_url();
    let prefix = unique_prefix("sealed");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let store = RedisStore::from_url(&url)
        .key_prefix(&prefix)
        .encrypt_with(&sealing_config(SECRET, &clock))
        .build()
        .unwrap();

    let session = stored(&clock, Some("alice@example.com"), b"plaintext-marker-8731");
    assert_eq!(
        store.create(&session).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        store.load(&session.id).await.unwrap(),
        Some(session.clone())
    );

    let raw = raw_get(&url, &session_key(&prefix, &session.id)).expect("the value is stored");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.contains("plaintext-marker-8731"),
        "payload in clear: {text}"
    );
    assert!(
        !text.contains("alice@example.com"),
        "identity in clear: {text}"
    );
    assert_eq!(&raw[..3], b"s1e", "the header marks the value as sealed");

    // The payload changes with every save, and stays sealed.
    let mut second = session.clone();
    second.version = 2;
    second.payload = Bytes::from_static(b"second-marker-1187");
    assert_eq!(store.save(&second, 1).await.unwrap(), SaveOutcome::Saved);
    let raw = raw_get(&url, &session_key(&prefix, &session.id)).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("second-marker-1187"));
    assert_eq!(store.load(&session.id).await.unwrap(), Some(second));
}

#[tokio::test]
async fn sealed_value_bound_to_key_and_ring() {
    let url = shared_url();
    let prefix = unique_prefix("sealed-binding");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let sealed_store = |secret: &[u8]| {
        RedisStore::from_url(&url)
            .key_prefix(&prefix)
            .encrypt_with(&sealing_config(secret, &clock))
            .build()
            .unwrap()
    };
    let store = sealed_store(SECRET);
    let session = stored(&clock, None, b"data");
    store.create(&session).await.unwrap();

    // Copied under another session key, the value does not open.
    let other = SessionId::random();
    let raw = raw_get(&url, &session_key(&prefix, &session.id)).unwrap();
    let _: () = redis::cmd("SET")
        .arg(session_key(&prefix, &other))
        .arg(&raw)
        .query(&mut admin(&url))
        .unwrap();
    assert_backend_error(store.load(&other).await, "value copied to another id");

    // Another key ring cannot open it.
    assert_backend_error(
        sealed_store(OTHER_SECRET).load(&session.id).await,
        "value sealed with another secret",
    );

    // A ring that keeps the old secret as retired reads it.
    let rotated = SessionConfig::testing(OTHER_SECRET)
        .retired_secret(SECRET)
        .clock(clock.clone())
        .build()
        .unwrap();
    let rotated_store = RedisStore::from_url(&url)
        .key_prefix(&prefix)
        .encrypt_with(&rotated)
        .build()
        .unwrap();
    assert_eq!(
        rotated_store.load(&session.id).await.unwrap(),
        Some(session)
    );
}

#[tokio::test]
async fn sealing_mismatch_is_an_error() {
    let url = shared_url();
    let prefix = unique_prefix("sealing-mismatch");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let plain = store(&url, &prefix, &clock);
    let sealed = RedisStore::from_url(&url)
        .key_prefix(&prefix)
        .encrypt_with(&sealing_config(SECRET, &clock))
        .build()
        .unwrap();

    let written_sealed = stored(&clock, None, b"sealed");
    sealed.create(&written_sealed).await.unwrap();
    assert_backend_error(
        plain.load(&written_sealed.id).await,
        "plain store, sealed value",
    );

    let written_plain = stored(&clock, None, b"plain");
    plain.create(&written_plain).await.unwrap();
    assert_backend_error(
        sealed.load(&written_plain.id).await,
        "sealed store, plain value",
    );
}

#[tokio::test]
async fn app_keys_never_replace_sessions() {
    let url = shared_url();
    let prefix = unique_prefix("app-keys");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let store = store(&url, &prefix, &clock);
    let mut app = admin(&url);

    // The application writes under the prefix, but not in the session layout:
    // the id without hash tag braces, and an arbitrary key.
    let id = SessionId::random();
    let lookalike = format!("{prefix}{}", id.encode());
    let arbitrary = format!("{prefix}cache:user:1");
    for key in [&lookalike, &arbitrary] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("app value")
            .query(&mut app)
            .unwrap();
    }

    assert_eq!(store.load(&id).await.unwrap(), None);
    let mut session = stored(&clock, None, b"session data");
    session.id = id.clone();
    assert_eq!(
        store.create(&session).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(store.load(&id).await.unwrap(), Some(session));
    for key in [&lookalike, &arbitrary] {
        let value: String = redis::cmd("GET").arg(key).query(&mut app).unwrap();
        assert_eq!(value, "app value", "{key} is untouched");
    }
}

#[tokio::test]
async fn garbage_under_a_session_key_is_an_error() {
    let url = shared_url();
    let prefix = unique_prefix("garbage");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let store = store(&url, &prefix, &clock);
    let mut app = admin(&url);

    let garbage: [&[u8]; 4] = [
        b"",
        b"not a session",
        b"s1p00000000000000000001",
        &[0xff; 300],
    ];
    for bytes in garbage {
        let session = stored(&clock, Some("user-a"), b"x");
        let key = session_key(&prefix, &session.id);
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(bytes)
            .query(&mut app)
            .unwrap();

        assert_backend_error(store.load(&session.id).await, "load of garbage");
        assert_backend_error(store.save(&session, 1).await, "save over garbage");
        assert_backend_error(
            store.touch(&session.id, session.expires_at, 1).await,
            "touch of garbage",
        );
        assert_backend_error(store.delete(&session.id).await, "delete of garbage");
        assert_eq!(
            store.create(&session).await.unwrap(),
            CreateOutcome::IdTaken,
            "create never overwrites what is under the key"
        );
        let left: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut app).unwrap();
        assert_eq!(left, bytes, "the garbage is left as it was");
    }

    // A value of another Redis type under a session key.
    let id = SessionId::random();
    let _: () = redis::cmd("HSET")
        .arg(session_key(&prefix, &id))
        .arg("field")
        .arg("value")
        .query(&mut app)
        .unwrap();
    assert_backend_error(store.load(&id).await, "load of a hash");
    assert_backend_error(store.touch(&id, None, 1).await, "touch of a hash");
}

#[tokio::test]
async fn redis_ttl_follows_the_session_deadline() {
    let url = shared_url();
    let prefix = unique_prefix("ttl");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let store = store(&url, &prefix, &clock);
    let mut app = admin(&url);
    let expire_time = |app: &mut redis::Connection, key: &str| -> i64 {
        redis::cmd("PEXPIRETIME").arg(key).query(app).unwrap()
    };
    let unix_ms = |at: time::OffsetDateTime| (at.unix_timestamp_nanos() / 1_000_000) as i64;

    let session = stored(&clock, Some("user-a"), b"x");
    let key = session_key(&prefix, &session.id);
    store.create(&session).await.unwrap();
    assert_eq!(
        expire_time(&mut app, &key),
        unix_ms(session.expires_at.unwrap())
    );

    let later = clock.now() + Duration::hours(2);
    store.touch(&session.id, Some(later), 1).await.unwrap();
    assert_eq!(expire_time(&mut app, &key), unix_ms(later));

    let mut saved = session.clone();
    saved.version = 2;
    saved.expires_at = Some(clock.now() + Duration::hours(3));
    store.save(&saved, 1).await.unwrap();
    assert_eq!(
        expire_time(&mut app, &key),
        unix_ms(saved.expires_at.unwrap())
    );

    saved.version = 3;
    saved.expires_at = None;
    store.save(&saved, 2).await.unwrap();
    assert_eq!(expire_time(&mut app, &key), -1, "no deadline, no TTL");
}

#[tokio::test]
async fn identity_index_is_extended_only_when_needed() {
    let url = shared_url();
    let prefix = unique_prefix("index-ttl");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let store = RedisStore::from_url(&url)
        .key_prefix(&prefix)
        .clock(Arc::new(clock.clone()))
        .identity_index_margin(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let mut app = admin(&url);
    let unix_ms = |at: time::OffsetDateTime| (at.unix_timestamp_nanos() / 1_000_000) as i64;

    let session = stored(&clock, Some("user-a"), b"x");
    store.create(&session).await.unwrap();
    let index_keys = scan(&mut app, &format!("{prefix}identity:*"));
    assert_eq!(index_keys.len(), 1, "{index_keys:?}");
    let index_deadline = |app: &mut redis::Connection| -> i64 {
        redis::cmd("PEXPIRETIME")
            .arg(&index_keys[0])
            .query(app)
            .unwrap()
    };
    let created_deadline = unix_ms(session.expires_at.unwrap()) + 60_000;
    assert_eq!(index_deadline(&mut app), created_deadline);

    // Within the margin: the index entry is left alone.
    let within = session.expires_at.unwrap() + Duration::seconds(60);
    store.touch(&session.id, Some(within), 1).await.unwrap();
    assert_eq!(index_deadline(&mut app), created_deadline);

    // Past it: the index entry is extended to the new expiry plus the margin.
    let past = session.expires_at.unwrap() + Duration::minutes(10);
    store.touch(&session.id, Some(past), 1).await.unwrap();
    assert_eq!(index_deadline(&mut app), unix_ms(past) + 60_000);

    let mut saved = session.clone();
    saved.version = 2;
    saved.expires_at = Some(past + Duration::minutes(10));
    store.save(&saved, 1).await.unwrap();
    assert_eq!(
        index_deadline(&mut app),
        unix_ms(saved.expires_at.unwrap()) + 60_000
    );
    assert_eq!(
        store.list_by_identity("user-a").await.unwrap(),
        vec![session.id.clone()]
    );

    // A session without deadline keeps its index without TTL.
    saved.version = 3;
    saved.expires_at = None;
    store.save(&saved, 2).await.unwrap();
    assert_eq!(index_deadline(&mut app), -1);
}

#[tokio::test]
async fn invalid_prefix_and_url_are_rejected() {
    for prefix in ["", "app:{tag}:", "app}"] {
        let error = RedisStore::from_url("redis://127.0.0.1:6379")
            .key_prefix(prefix)
            .build()
            .unwrap_err();
        assert!(
            matches!(error, RedisConfigError::InvalidKeyPrefix { .. }),
            "{prefix:?}: {error:?}"
        );
    }
    // rediss:// needs a TLS feature of the redis crate, which is not enabled.
    let urls = [
        "http://127.0.0.1:6379",
        "not a url",
        "redis://user:secretpw@127.0.0.1:notaport",
        "rediss://127.0.0.1:6380",
    ];
    for url in urls {
        let error = RedisStore::from_url(url).build().unwrap_err();
        assert!(
            matches!(error, RedisConfigError::InvalidUrl { .. }),
            "{url}: {error:?}"
        );
        assert!(
            error.to_string().starts_with("invalid Redis URL"),
            "{url}: {error}"
        );
        assert!(!error.to_string().contains("secretpw"), "{error}");
    }
}

#[tokio::test]
async fn store_runs_on_an_existing_pool() {
    let url = shared_url();
    let prefix = unique_prefix("pool");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let pool = deadpool_redis::Config::from_url(&url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let store = RedisStore::from_pool(pool)
        .key_prefix(&prefix)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    store.ping().await.unwrap();

    let session = stored(&clock, Some("user-a"), b"x");
    assert_eq!(
        store.create(&session).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(store.load(&session.id).await.unwrap(), Some(session));
}

/// Command call counts from `INFO commandstats`, without the test's own
/// `INFO` and `CONFIG RESETSTAT`.
fn command_calls(connection: &mut redis::Connection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(connection)
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .filter(|(name, _)| name != "info" && name != "config|resetstat")
        .collect()
}

fn calls(expected: &[(&str, u64)]) -> BTreeMap<String, u64> {
    expected
        .iter()
        .map(|(name, count)| ((*name).to_owned(), *count))
        .collect()
}

#[tokio::test]
async fn each_operation_costs_one_round_trip() {
    let server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let store = RedisStore::from_url(server.url())
        .key_prefix("app:session:")
        .clock(Arc::new(clock.clone()))
        .connections(1)
        .build()
        .unwrap();
    let mut admin = server.admin();
    let mut measure = |label: &str| {
        let counts = command_calls(&mut admin);
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut admin)
            .unwrap();
        (label.to_owned(), counts)
    };

    // Warm up: open the connection and load the scripts.
    let anonymous = stored(&clock, None, b"cart");
    let mut signed_in = stored(&clock, Some("user-a"), b"profile");
    store.create(&anonymous).await.unwrap();
    store.create(&signed_in).await.unwrap();
    store
        .touch(&anonymous.id, anonymous.expires_at, 1)
        .await
        .unwrap();
    store.save(&anonymous, 1).await.unwrap();
    store.delete(&SessionId::random()).await.unwrap();
    measure("warm-up");

    store.load(&anonymous.id).await.unwrap().unwrap();
    assert_eq!(measure("load").1, calls(&[("get", 1)]), "load");

    let mut next = anonymous.clone();
    next.version = 2;
    assert_eq!(store.save(&next, 1).await.unwrap(), SaveOutcome::Saved);
    assert_eq!(
        measure("save").1,
        calls(&[("evalsha", 1), ("getrange", 1), ("set", 1)]),
        "save of an anonymous session: one EVALSHA; GETRANGE and SET run inside it"
    );

    signed_in.version = 2;
    assert_eq!(store.save(&signed_in, 1).await.unwrap(), SaveOutcome::Saved);
    assert_eq!(
        measure("save signed in").1,
        calls(&[("evalsha", 1), ("getrange", 1), ("set", 1), ("setrange", 1)]),
        "save without identity change: one EVALSHA"
    );

    let later = clock.now() + Duration::minutes(31);
    assert_eq!(
        store.touch(&signed_in.id, Some(later), 2).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(
        measure("touch").1,
        calls(&[
            ("evalsha", 1),
            ("getrange", 1),
            ("setrange", 1),
            ("pexpireat", 1)
        ]),
        "touch: one EVALSHA"
    );

    store.create(&stored(&clock, None, b"new")).await.unwrap();
    assert_eq!(
        measure("create").1,
        calls(&[("set", 1)]),
        "anonymous create"
    );

    // Login: the save script, then one pipelined index update.
    let mut login = next.clone();
    login.version = 3;
    login.identity = Some("user-b".into());
    assert_eq!(store.save(&login, 2).await.unwrap(), SaveOutcome::Saved);
    assert_eq!(
        measure("login").1,
        calls(&[
            ("evalsha", 1),
            ("getrange", 1),
            ("set", 1),
            ("eval", 1),
            ("exists", 1),
            ("sadd", 1),
            ("pexpireat", 1),
        ]),
        "save with identity change: the script and one index update"
    );
}

#[tokio::test]
async fn operations_touch_only_keys_under_the_prefix() {
    let server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let mut app = server.admin();
    let app_keys = BTreeMap::from([
        ("app:config".to_owned(), "1".to_owned()),
        ("session:legacy".to_owned(), "2".to_owned()),
        ("other:{tag}:key".to_owned(), "3".to_owned()),
        ("myapp:sess".to_owned(), "4".to_owned()),
    ]);
    for (key, value) in &app_keys {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query(&mut app)
            .unwrap();
    }

    let prefix = "myapp:sess:";
    let store = store(&server.url(), prefix, &clock);
    let a = stored(&clock, Some("user-a"), b"a");
    let b = stored(&clock, None, b"b");
    store.create(&a).await.unwrap();
    store.create(&b).await.unwrap();
    let mut login = b.clone();
    login.version = 2;
    login.identity = Some("user-a".into());
    store.save(&login, 1).await.unwrap();
    store
        .touch(&a.id, Some(clock.now() + Duration::days(3)), 1)
        .await
        .unwrap();
    assert_eq!(store.list_by_identity("user-a").await.unwrap().len(), 2);
    store.delete(&a.id).await.unwrap();
    store.delete_by_identity("user-a").await.unwrap();
    store
        .create(&stored(&clock, Some("user-c"), b"c"))
        .await
        .unwrap();

    let after: BTreeSet<String> = scan(&mut app, "*").into_iter().collect();
    for key in &after {
        assert!(
            key.starts_with(prefix) || app_keys.contains_key(key),
            "{key} is outside the prefix and not the application's"
        );
    }
    for (key, value) in &app_keys {
        let now: String = redis::cmd("GET").arg(key).query(&mut app).unwrap();
        assert_eq!(&now, value, "{key} is unchanged");
    }
    assert!(after.iter().any(|key| key.starts_with(prefix)));
}

#[tokio::test]
async fn url_credentials_and_database_are_honoured() {
    let server = RedisServer::start();
    let mut admin = server.admin();
    // This user may only touch keys under the prefix, so any access outside
    // it fails the suite with NOPERM.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "sessions", "on", ">s3cret", "~acl:*", "+@all"][..])
        .query(&mut admin)
        .unwrap();
    let url = format!("redis://sessions:s3cret@127.0.0.1:{}/3", server.port());
    let check = AtomicUsize::new(0);

    conformance::run_all(|clock| {
        let prefix = format!("acl:{}:", check.fetch_add(1, Ordering::Relaxed));
        let store = store(&url, &prefix, clock);
        async move { store }
    })
    .await;

    let in_database = |admin: &mut redis::Connection, db: u8| -> usize {
        let _: () = redis::cmd("SELECT").arg(db).query(admin).unwrap();
        scan(admin, "acl:*").len()
    };
    assert!(
        in_database(&mut admin, 3) > 0,
        "keys are written to database 3"
    );
    assert_eq!(
        in_database(&mut admin, 0),
        0,
        "nothing is written to database 0"
    );

    let wrong = RedisStore::from_url(format!(
        "redis://sessions:wrong@127.0.0.1:{}/3",
        server.port()
    ))
    .key_prefix("acl:")
    .build()
    .unwrap();
    let error = wrong.load(&SessionId::random()).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Backend { .. }),
        "a wrong password is a configuration error, not an outage: {error:?}"
    );
}

#[tokio::test]
async fn expiry_uses_the_store_clock() {
    let url = shared_url();
    let prefix = unique_prefix("clock");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let store = store(&url, &prefix, &clock);

    let session = stored(&clock, Some("user-a"), b"x");
    store.create(&session).await.unwrap();
    clock.advance(Duration::minutes(31));
    assert_eq!(store.load(&session.id).await.unwrap(), None);
    assert_eq!(
        store
            .touch(&session.id, Some(clock.now() + Duration::hours(1)), 1)
            .await
            .unwrap(),
        SaveOutcome::Missing,
        "an expired session is never extended"
    );
    assert!(
        !store.delete(&session.id).await.unwrap(),
        "nothing live was deleted"
    );
    assert_eq!(
        raw_get(&url, &session_key(&prefix, &session.id)),
        None,
        "delete removed the expired value anyway"
    );
    assert!(clock.now() > session.expires_at.unwrap());
}
