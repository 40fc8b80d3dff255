//! The encrypted cookie store through its public API: round trips, expiry,
//! the size budget, key rotation, revocation and hostile cookie values.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

use session_core::{
    Clock, CodecError, CookieStore, CookieStoreError, CreateOutcome, FlashMessage, ManualClock,
    MemoryStore, Purpose, SaveOutcome, SessionConfig, SessionConfigBuilder, SessionData,
    SessionExpiry, SessionId, SessionRecord, SessionStore, StoreError, StoredSession,
    DEFAULT_COOKIE_BUDGET,
};

const SECRET: &[u8; 32] = b"cookie store test secret, 32 b!!";
const OTHER_SECRET: &[u8; 32] = b"another cookie store secret 32 b";
const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    user: Option<String>,
    notes: String,
    blob: Vec<u8>,
}

impl SessionData for Account {
    fn identity(&self) -> Option<String> {
        self.user.clone()
    }
}

/// A session type whose encoding differs from `Account`, as after an
/// incompatible change of the application's session struct.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    hits: u64,
    label: [u8; 32],
}

impl SessionData for Counter {
    fn identity(&self) -> Option<String> {
        None
    }
}

fn config(
    clock: &ManualClock,
    customise: impl FnOnce(SessionConfigBuilder) -> SessionConfigBuilder,
) -> SessionConfig {
    let builder = SessionConfig::builder().secret(SECRET).clock(clock.clone());
    customise(builder)
        .build()
        .expect("test configuration is valid")
}

fn default_config(clock: &ManualClock) -> SessionConfig {
    config(clock, |builder| builder)
}

fn new_record(config: &SessionConfig, data: Account) -> SessionRecord<Account> {
    SessionRecord::new(
        config.ids().generate(),
        data,
        config.clock().now(),
        config.idle_timeout(),
        config.absolute_lifetime(),
        false,
    )
}

fn alice() -> Account {
    Account {
        user: Some("alice".to_owned()),
        notes: "likes tea".to_owned(),
        blob: vec![1, 2, 3],
    }
}

/// Returns the cookie value of a `Set-Cookie` header value.
fn value_of(header: &str) -> &str {
    let pair = header.split(';').next().expect("split yields one item");
    pair.split_once('=').expect("header has name=value").1
}

/// Seals `record` and returns the cookie value.
fn seal_value<T: SessionData>(store: &CookieStore, record: &SessionRecord<T>) -> String {
    let header = store.seal(record, None).expect("record fits the budget");
    value_of(&header).to_owned()
}

/// Events of `session_core` seen by the current thread's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(Level, String)>>>);

impl Captured {
    fn count(&self, level: Level) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| *l == level)
            .count()
    }

    fn text(&self) -> String {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .map(|(level, text)| format!("{level} {text}\n"))
            .collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

struct CaptureLayer(Captured);

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("session_core") {
            return;
        }
        let mut fields = FieldText(String::new());
        event.record(&mut fields);
        let level = *event.metadata().level();
        self.0 .0.lock().unwrap().push((level, fields.0));
    }
}

struct FieldText(String);

impl Visit for FieldText {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

/// Captures this thread's log events until the guard is dropped. The tests
/// run on Tokio's current-thread runtime, so every event of the test body
/// is seen.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(CaptureLayer(captured.clone()));
    let guard = tracing::subscriber::set_default(subscriber);
    (captured, guard)
}

/// A store whose every operation fails as if the backend were down.
#[derive(Debug)]
struct DownStore;

fn down() -> StoreError {
    StoreError::Unavailable {
        message: "connection refused".to_owned(),
    }
}

#[async_trait]
impl SessionStore for DownStore {
    async fn load(&self, _id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        Err(down())
    }
    async fn create(&self, _session: &StoredSession) -> Result<CreateOutcome, StoreError> {
        Err(down())
    }
    async fn save(
        &self,
        _session: &StoredSession,
        _expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        Err(down())
    }
    async fn touch(
        &self,
        _id: &SessionId,
        _expires_at: Option<OffsetDateTime>,
        _expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        Err(down())
    }
    async fn delete(&self, _id: &SessionId) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn list_by_identity(&self, _identity: &str) -> Result<Vec<SessionId>, StoreError> {
        Err(down())
    }
    async fn delete_by_identity(&self, _identity: &str) -> Result<usize, StoreError> {
        Err(down())
    }
}

#[tokio::test]
async fn round_trip_keeps_data_flash_and_timing() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone());
    let mut record = new_record(&config, alice());
    record.flash.push(FlashMessage {
        key: "notice".to_owned(),
        message: "Saved".to_owned(),
    });

    let header = store.seal(&record, None).unwrap();
    assert!(header.starts_with("id="), "{header}");
    assert!(
        header.ends_with("; HttpOnly; SameSite=Lax; Secure; Path=/"),
        "{header}"
    );

    let loaded = store
        .load::<Account>(value_of(&header))
        .await
        .unwrap()
        .unwrap();
    assert!(!loaded.needs_reseal);
    assert_eq!(loaded.record.version(), 1);
    assert_eq!(loaded.record.id(), record.id());
    assert_eq!(loaded.record.data, alice());
    assert_eq!(loaded.record.flash, record.flash);
    assert_eq!(loaded.record.created_at(), T0);
    assert_eq!(loaded.record.last_seen(), T0);
    assert_eq!(loaded.record.expires_at(), Some(T0 + Duration::minutes(30)));
    record.committed(1);
    assert_eq!(loaded.record, record);
}

#[tokio::test]
async fn each_seal_advances_the_version() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone());
    let record = new_record(&config, alice());

    let first = store
        .load::<Account>(&seal_value(&store, &record))
        .await
        .unwrap()
        .unwrap();
    let second = store
        .load::<Account>(&seal_value(&store, &first.record))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.record.version(), 1);
    assert_eq!(second.record.version(), 2);
}

#[tokio::test]
async fn persistent_cookie_carries_max_age_and_expires() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone());
    let record = new_record(&config, alice());

    let header = store.seal(&record, Some(Duration::days(60))).unwrap();
    assert!(
        header.ends_with("; Path=/; Max-Age=5184000; Expires=Sat, 02 Mar 2030 00:00:00 GMT"),
        "{header}"
    );
}

#[tokio::test]
async fn idle_expired_cookie_loads_as_none() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone());
    let value = seal_value(&store, &new_record(&config, alice()));
    let (logs, _guard) = capture_logs();

    clock.set(T0 + Duration::minutes(30) - Duration::seconds(1));
    assert!(store.load::<Account>(&value).await.unwrap().is_some());

    clock.set(T0 + Duration::minutes(30));
    assert!(store.load::<Account>(&value).await.unwrap().is_none());
    assert_eq!(logs.count(Level::WARN), 0, "{}", logs.text());
    assert_eq!(logs.count(Level::DEBUG), 1, "{}", logs.text());
    assert!(logs.text().contains("expired"), "{}", logs.text());
}

#[tokio::test]
async fn activity_slides_the_idle_deadline() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone());
    let value = seal_value(&store, &new_record(&config, alice()));

    clock.set(T0 + Duration::minutes(20));
    let mut record = store.load::<Account>(&value).await.unwrap().unwrap().record;
    record.mark_seen(clock.now());
    let refreshed = seal_value(&store, &record);

    clock.set(T0 + Duration::minutes(45));
    assert!(store.load::<Account>(&value).await.unwrap().is_none());
    let loaded = store.load::<Account>(&refreshed).await.unwrap().unwrap();
    assert_eq!(loaded.record.last_seen(), T0 + Duration::minutes(20));

    clock.set(T0 + Duration::minutes(50));
    assert!(store.load::<Account>(&refreshed).await.unwrap().is_none());
}

#[tokio::test]
async fn absolute_deadline_is_not_extended_by_activity() {
    let clock = ManualClock::new(T0);
    let config = config(&clock, |builder| {
        builder
            .idle_timeout(Some(Duration::minutes(30)))
            .absolute_lifetime(Some(Duration::hours(1)))
    });
    let store = CookieStore::new(config.clone());
    let mut record = new_record(&config, alice());

    clock.set(T0 + Duration::minutes(50));
    record.mark_seen(clock.now());
    let value = seal_value(&store, &record);

    clock.set(T0 + Duration::minutes(59));
    assert!(store.load::<Account>(&value).await.unwrap().is_some());
    clock.set(T0 + Duration::hours(1));
    assert!(store.load::<Account>(&value).await.unwrap().is_none());
}

#[tokio::test]
async fn remember_me_outlives_the_idle_timeout() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone());
    let mut record = new_record(&config, alice());
    record.set_expiry(
        SessionExpiry::RememberFor(Duration::days(60)),
        T0,
        config.idle_timeout(),
        config.absolute_lifetime(),
        false,
    );
    let value = seal_value(&store, &record);

    clock.set(T0 + Duration::days(59));
    let loaded = store.load::<Account>(&value).await.unwrap().unwrap();
    assert!(loaded.record.is_persistent());
    clock.set(T0 + Duration::days(60));
    assert!(store.load::<Account>(&value).await.unwrap().is_none());
}

/// Returns the `blob` length whose sealed header is exactly `target` bytes,
/// searching every length up to the budget.
fn blob_len_for_header(
    store: &CookieStore,
    config: &SessionConfig,
    target: usize,
) -> Option<usize> {
    (0..DEFAULT_COOKIE_BUDGET).find(|&len| {
        let record = new_record(config, random_blob_account(len));
        match store.seal(&record, Some(Duration::days(30))) {
            Ok(header) => header.len() == target,
            Err(CookieStoreError::TooLarge { size, .. }) => size == target,
            Err(other) => panic!("unexpected seal error: {other}"),
        }
    })
}

/// An account whose blob is random, so compression could not shrink it.
fn random_blob_account(len: usize) -> Account {
    Account {
        user: Some("alice".to_owned()),
        notes: String::new(),
        blob: (0..len).map(|_| rand::random::<u8>()).collect(),
    }
}

/// A production-style cookie: `__Host-` name, Secure, HttpOnly, SameSite=Lax,
/// Path=/, and a persistent lifetime. Compression is off so that the header
/// length is a function of the blob length alone.
fn boundary_config(clock: &ManualClock) -> SessionConfig {
    config(clock, |builder| {
        builder.cookie_name("__Host-id").compression_threshold(None)
    })
}

#[tokio::test]
async fn header_of_exactly_4096_bytes_is_accepted() {
    let clock = ManualClock::new(T0);
    let config = boundary_config(&clock);
    let store = CookieStore::new(config.clone());
    let len =
        blob_len_for_header(&store, &config, 4096).expect("a blob length gives a 4096-byte header");

    let record = new_record(&config, random_blob_account(len));
    let header = store.seal(&record, Some(Duration::days(30))).unwrap();
    assert_eq!(header.len(), 4096);
    assert!(header.starts_with("__Host-id="), "{}", &header[..20]);
    assert!(
        header.ends_with(
            "; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=2592000; \
             Expires=Thu, 31 Jan 2030 00:00:00 GMT"
        ),
        "{}",
        &header[header.len() - 100..]
    );

    let loaded = store
        .load::<Account>(value_of(&header))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.record.data, record.data);
}

#[tokio::test]
async fn header_of_4097_bytes_is_rejected_with_a_warning() {
    let clock = ManualClock::new(T0);
    let config = boundary_config(&clock);
    let store = CookieStore::new(config.clone());
    let len =
        blob_len_for_header(&store, &config, 4097).expect("a blob length gives a 4097-byte header");
    let record = new_record(&config, random_blob_account(len));
    let (logs, _guard) = capture_logs();

    let error = store.seal(&record, Some(Duration::days(30))).unwrap_err();
    assert_eq!(
        error,
        CookieStoreError::TooLarge {
            size: 4097,
            limit: 4096
        }
    );
    assert!(error.to_string().contains("4097 bytes"), "{error}");
    assert_eq!(logs.count(Level::WARN), 1, "{}", logs.text());
    let text = logs.text();
    assert!(text.contains("size=4097"), "{text}");
    assert!(text.contains("limit=4096"), "{text}");
    assert!(!text.contains("alice"), "{text}");
}

#[tokio::test]
async fn lower_budget_rejects_what_the_default_accepts() {
    let clock = ManualClock::new(T0);
    let config = boundary_config(&clock);
    let store = CookieStore::new(config.clone());
    let len =
        blob_len_for_header(&store, &config, 4096).expect("a blob length gives a 4096-byte header");
    let record = new_record(&config, random_blob_account(len));
    let header = store.seal(&record, Some(Duration::days(30))).unwrap();

    let smaller = store.clone().budget(4095);
    assert_eq!(
        smaller.seal(&record, Some(Duration::days(30))).unwrap_err(),
        CookieStoreError::TooLarge {
            size: 4096,
            limit: 4095
        }
    );
    assert!(
        smaller
            .load::<Account>(value_of(&header))
            .await
            .unwrap()
            .is_some(),
        "the value alone is shorter than the budget"
    );
    let tiny = store.clone().budget(100);
    assert!(tiny
        .load::<Account>(value_of(&header))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn budget_above_4096_is_clamped() {
    let clock = ManualClock::new(T0);
    let config = boundary_config(&clock);
    let store = CookieStore::new(config.clone()).budget(10_000);
    let len =
        blob_len_for_header(&store, &config, 4097).expect("a blob length gives a 4097-byte header");
    let record = new_record(&config, random_blob_account(len));

    assert_eq!(
        store.seal(&record, Some(Duration::days(30))).unwrap_err(),
        CookieStoreError::TooLarge {
            size: 4097,
            limit: 4096
        }
    );
}

#[tokio::test]
async fn compressible_record_fits_thanks_to_compression() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone());
    let mut data = alice();
    data.notes = "tea ".repeat(2_500);
    let record = new_record(&config, data.clone());

    let header = store.seal(&record, None).unwrap();
    assert!(header.len() < 4096, "{} bytes", header.len());
    let loaded = store
        .load::<Account>(value_of(&header))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.record.data, data);
}

#[tokio::test]
async fn record_over_the_codec_cap_is_a_codec_error() {
    let clock = ManualClock::new(T0);
    let config = config(&clock, |builder| builder.max_record_bytes(1024));
    let store = CookieStore::new(config.clone());
    let mut data = alice();
    data.notes = "x".repeat(2_000);

    let error = store.seal(&new_record(&config, data), None).unwrap_err();
    assert!(
        matches!(
            error,
            CookieStoreError::Codec(CodecError::TooLarge { limit: 1024, .. })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn retired_key_opens_and_asks_for_reseal() {
    let clock = ManualClock::new(T0);
    let old = default_config(&clock);
    let rotated = config(&clock, |builder| {
        builder.secret(OTHER_SECRET).retired_secret(SECRET)
    });
    let current_only = config(&clock, |builder| builder.secret(OTHER_SECRET));
    let old_store = CookieStore::new(old.clone());
    let rotated_store = CookieStore::new(rotated);
    let current_store = CookieStore::new(current_only);
    let value = seal_value(&old_store, &new_record(&old, alice()));

    let loaded = rotated_store
        .load::<Account>(&value)
        .await
        .unwrap()
        .unwrap();
    assert!(loaded.needs_reseal);
    assert_eq!(loaded.record.data, alice());

    let resealed = seal_value(&rotated_store, &loaded.record);
    let reloaded = rotated_store
        .load::<Account>(&resealed)
        .await
        .unwrap()
        .unwrap();
    assert!(!reloaded.needs_reseal);
    let reloaded = current_store
        .load::<Account>(&resealed)
        .await
        .unwrap()
        .unwrap();
    assert!(!reloaded.needs_reseal);
    assert_eq!(reloaded.record.data, alice());
}

#[tokio::test]
async fn removed_key_gives_no_session_and_no_error() {
    let clock = ManualClock::new(T0);
    let old = default_config(&clock);
    let current_only = config(&clock, |builder| builder.secret(OTHER_SECRET));
    let value = seal_value(&CookieStore::new(old.clone()), &new_record(&old, alice()));
    let (logs, _guard) = capture_logs();

    let loaded = CookieStore::new(current_only).load::<Account>(&value).await;
    assert!(matches!(loaded, Ok(None)), "{loaded:?}");
    assert_eq!(logs.count(Level::WARN), 1, "{}", logs.text());
}

fn revocation_setup(clock: &ManualClock) -> (SessionConfig, MemoryStore, CookieStore) {
    let config = default_config(clock);
    let revocations = MemoryStore::builder().clock(config.shared_clock()).build();
    let store = CookieStore::new(config.clone()).revocations(revocations.clone());
    (config, revocations, store)
}

#[tokio::test]
async fn revoked_copy_loads_as_none() {
    let clock = ManualClock::new(T0);
    let (config, _revocations, store) = revocation_setup(&clock);
    let record = new_record(&config, alice());
    let copy = seal_value(&store, &record);
    let other = seal_value(&store, &new_record(&config, alice()));
    assert!(store.load::<Account>(&copy).await.unwrap().is_some());
    let (logs, _guard) = capture_logs();

    store.revoke(&record).await.unwrap();
    assert!(store.load::<Account>(&copy).await.unwrap().is_none());
    assert_eq!(logs.count(Level::WARN), 1, "{}", logs.text());
    assert!(logs.text().contains("revoked"), "{}", logs.text());
    assert!(
        store.load::<Account>(&other).await.unwrap().is_some(),
        "another session is not revoked"
    );

    // A later cookie of the same session id is revoked too.
    let resealed = seal_value(&store, &record);
    assert!(store.load::<Account>(&resealed).await.unwrap().is_none());
    store
        .revoke(&record)
        .await
        .expect("revoking twice succeeds");
}

#[tokio::test]
async fn revocation_entry_lasts_until_the_session_deadline() {
    let clock = ManualClock::new(T0);
    let (config, revocations, store) = revocation_setup(&clock);
    let record = new_record(&config, alice());
    store.revoke(&record).await.unwrap();

    let entry = revocations
        .load(record.id())
        .await
        .unwrap()
        .expect("entry stored");
    assert_eq!(entry.expires_at, Some(T0 + Duration::minutes(30)));
    assert_eq!(entry.identity, None);
    assert!(entry.payload.is_empty());

    clock.set(T0 + Duration::minutes(30));
    assert!(revocations.load(record.id()).await.unwrap().is_none());
}

#[tokio::test]
async fn revoking_an_expired_session_writes_nothing() {
    let clock = ManualClock::new(T0);
    let (config, revocations, store) = revocation_setup(&clock);
    let record = new_record(&config, alice());

    clock.set(T0 + Duration::hours(1));
    store.revoke(&record).await.unwrap();
    assert_eq!(revocations.stats().live_sessions, 0);
}

#[tokio::test]
async fn without_revocations_revoke_is_a_noop_and_copies_stay_valid() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone());
    let record = new_record(&config, alice());
    let copy = seal_value(&store, &record);

    assert!(!store.has_revocations());
    store.revoke(&record).await.unwrap();
    assert!(store.load::<Account>(&copy).await.unwrap().is_some());
}

#[tokio::test]
async fn revocation_store_failure_is_an_error_not_no_session() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone()).revocations(DownStore);
    let record = new_record(&config, alice());
    let value = seal_value(&store, &record);

    let loaded = store.load::<Account>(&value).await;
    assert!(
        matches!(loaded, Err(StoreError::Unavailable { .. })),
        "{loaded:?}"
    );
    let revoked = store.revoke(&record).await;
    assert!(
        matches!(revoked, Err(StoreError::Unavailable { .. })),
        "{revoked:?}"
    );

    // Invalid values are rejected before the revocation store is asked.
    assert!(matches!(store.load::<Account>("garbage!").await, Ok(None)));
    assert!(matches!(store.load::<Account>(&value[1..]).await, Ok(None)));
}

/// Flips one bit of the decoded token at `index` and encodes it again.
fn flip_byte(value: &str, index: usize) -> String {
    let mut raw = URL_SAFE_NO_PAD.decode(value).unwrap();
    let at = index.min(raw.len() - 1);
    raw[at] ^= 0x01;
    URL_SAFE_NO_PAD.encode(raw)
}

/// Returns a sealed value that contains `-` or `_`, so that its standard
/// base64 form differs from it.
fn value_with_url_safe_characters(store: &CookieStore, config: &SessionConfig) -> String {
    for _ in 0..200 {
        let value = seal_value(store, &new_record(config, alice()));
        if value.contains(['-', '_']) {
            return value;
        }
    }
    panic!("200 sealed values contained neither `-` nor `_`");
}

#[tokio::test]
async fn hostile_values_load_as_none_with_one_warning_each() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone());
    let value = value_with_url_safe_characters(&store, &config);
    let raw = URL_SAFE_NO_PAD.decode(&value).unwrap();

    let other_name = config_named(&clock, "other");
    let for_other_name = seal_value(
        &CookieStore::new(other_name.clone()),
        &new_record(&other_name, alice()),
    );
    let other_purpose = config.keys().seal(Purpose::RedisValue, b"id", &raw);
    let not_a_record =
        config
            .keys()
            .seal(Purpose::CookieStore, b"id", b"not a cookie store plaintext");
    let mut changed_char = value.clone().into_bytes();
    changed_char[value.len() / 2] = if changed_char[value.len() / 2] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let mut extended_raw = raw.clone();
    extended_raw.extend_from_slice(&[0u8; 16]);
    let garbage: String = (0..10_240)
        .map(|i| char::from(b'!' + (i % 90) as u8))
        .collect();

    let cases: Vec<(&str, String)> = vec![
        ("first byte flipped", flip_byte(&value, 0)),
        ("key id byte flipped", flip_byte(&value, 3)),
        ("nonce byte flipped", flip_byte(&value, 10)),
        ("middle byte flipped", flip_byte(&value, raw.len() / 2)),
        ("tag byte flipped", flip_byte(&value, raw.len() - 1)),
        (
            "one character changed",
            String::from_utf8(changed_char).unwrap(),
        ),
        (
            "last character dropped",
            value[..value.len() - 1].to_owned(),
        ),
        ("truncated to half", value[..value.len() / 2].to_owned()),
        (
            "truncated to the header",
            URL_SAFE_NO_PAD.encode(&raw[..17]),
        ),
        ("one character appended", format!("{value}A")),
        ("four characters appended", format!("{value}AAAA")),
        (
            "bytes appended before encoding",
            URL_SAFE_NO_PAD.encode(&extended_raw),
        ),
        ("extra segment", format!("{value}.c2lnbmF0dXJl")),
        ("padding added", format!("{value}=")),
        ("standard padded encoding", STANDARD.encode(&raw)),
        ("standard alphabet", STANDARD_NO_PAD.encode(&raw)),
        ("sealed for another cookie name", for_other_name),
        ("sealed for another purpose", other_purpose),
        ("opens but is not a record", not_a_record),
        ("empty", String::new()),
        ("surrounded by whitespace", format!(" {value} ")),
        ("quoted", format!("\"{value}\"")),
        ("non-ASCII", "caf\u{e9}".to_owned()),
        ("10 kB of garbage", garbage),
        ("10 kB of base64url", "A".repeat(10_240)),
    ];
    let (logs, _guard) = capture_logs();

    for (case, hostile) in &cases {
        assert_ne!(hostile, &value, "{case}: the case must alter the value");
        logs.clear();
        let loaded = store.load::<Account>(hostile).await;
        assert!(matches!(loaded, Ok(None)), "{case}: {loaded:?}");
        assert_eq!(logs.count(Level::WARN), 1, "{case}: {}", logs.text());
        let text = logs.text();
        if hostile.len() >= 20 {
            assert!(
                !text.contains(&hostile[..20]),
                "{case}: log contains the value: {text}"
            );
        }
    }

    assert!(
        store.load::<Account>(&value).await.unwrap().is_some(),
        "the original still loads"
    );
}

fn config_named(clock: &ManualClock, name: &str) -> SessionConfig {
    config(clock, |builder| builder.cookie_name(name))
}

#[tokio::test]
async fn record_of_another_type_loads_as_none() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone());
    let value = seal_value(&store, &new_record(&config, alice()));
    let (logs, _guard) = capture_logs();

    assert!(store.load::<Counter>(&value).await.unwrap().is_none());
    assert_eq!(logs.count(Level::WARN), 1, "{}", logs.text());
    assert!(logs.text().contains("does not decode"), "{}", logs.text());
}

#[tokio::test]
async fn identical_payloads_seal_to_distinct_values_and_nonces() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let store = CookieStore::new(config.clone());
    let record = new_record(&config, alice());
    let mut values = HashSet::with_capacity(100_000);
    let mut nonces = HashSet::with_capacity(100_000);

    for _ in 0..100_000 {
        let value = seal_value(&store, &record);
        let raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
        let nonce: [u8; 12] = raw[5..17].try_into().unwrap();
        assert!(nonces.insert(nonce), "nonce repeated");
        assert!(values.insert(value), "sealed value repeated");
    }
    assert_eq!(values.len(), 100_000);
    assert_eq!(nonces.len(), 100_000);
}

#[tokio::test]
async fn statelessness_is_logged_at_start_up() {
    let clock = ManualClock::new(T0);
    let config = default_config(&clock);
    let (logs, _guard) = capture_logs();

    CookieStore::new(config.clone()).log_statelessness();
    assert_eq!(logs.count(Level::WARN), 1, "{}", logs.text());
    assert!(
        logs.text()
            .contains("copies of it stay valid until the session expires"),
        "{}",
        logs.text()
    );

    logs.clear();
    CookieStore::new(config)
        .revocations(MemoryStore::default())
        .log_statelessness();
    assert_eq!(logs.count(Level::WARN), 0, "{}", logs.text());
    assert_eq!(logs.count(Level::INFO), 1, "{}", logs.text());
}

#[test]
fn debug_output_shows_no_key_material() {
    let clock = ManualClock::new(T0);
    let store = CookieStore::new(default_config(&clock));
    let printed = format!("{store:?}");

    assert!(printed.starts_with("CookieStore {"), "{printed}");
    assert!(printed.contains("budget: 4096"), "{printed}");
    assert!(printed.contains("has_revocations: false"), "{printed}");
    assert!(!printed.contains("cookie store test secret"), "{printed}");
    assert!(
        !printed.contains(&format!("{:?}", SECRET.as_slice())),
        "{printed}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime starts")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_strings_never_load(value in any::<String>()) {
        let clock = ManualClock::new(T0);
        let store = CookieStore::new(default_config(&clock));
        let loaded = runtime().block_on(store.load::<Account>(&value));
        prop_assert!(matches!(loaded, Ok(None)), "{:?}", loaded);
    }

    #[test]
    fn arbitrary_base64url_never_loads(value in "[A-Za-z0-9_-]{0,700}") {
        let clock = ManualClock::new(T0);
        let store = CookieStore::new(default_config(&clock));
        let loaded = runtime().block_on(store.load::<Account>(&value));
        prop_assert!(matches!(loaded, Ok(None)), "{:?}", loaded);
    }

    #[test]
    fn any_changed_character_never_loads(position in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_-]") {
        let clock = ManualClock::new(T0);
        let config = default_config(&clock);
        let store = CookieStore::new(config.clone());
        let value = seal_value(&store, &new_record(&config, alice()));
        let at = position.index(value.len());
        prop_assume!(value[at..at + 1] != replacement);

        let changed = format!("{}{}{}", &value[..at], replacement, &value[at + 1..]);
        let loaded = runtime().block_on(store.load::<Account>(&changed));
        prop_assert!(matches!(loaded, Ok(None)), "{:?}", loaded);
    }
}
