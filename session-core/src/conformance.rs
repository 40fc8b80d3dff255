//! The store conformance suite, written once and run against every store.
//!
//! Enable the `test-suite` feature and call [`run_all`] from an async test
//! with a function that builds a fresh, empty store on a given clock:
//!
//! ```no_run
//! # async fn example() {
//! use std::sync::Arc;
//! use session_core::{conformance, MemoryStore};
//!
//! conformance::run_all(|clock| {
//!     let store = MemoryStore::builder().clock(Arc::new(clock.clone())).build();
//!     async move { store }
//! })
//! .await;
//! # }
//! ```
//!
//! Each check panics with a message naming the rule that failed.

use std::future::Future;

use bytes::Bytes;
use time::Duration;

use crate::{
    Clock, CreateOutcome, ManualClock, RecordCodec, SaveOutcome, SessionData, SessionId,
    SessionRecord, SessionStore, StoredSession,
};

/// Builds a session for store tests: a random id, version 1, expiring 30
/// minutes after the clock's now.
pub fn stored(clock: &ManualClock, identity: Option<&str>, payload: &[u8]) -> StoredSession {
    StoredSession {
        id: SessionId::random(),
        version: 1,
        expires_at: Some(clock.now() + Duration::minutes(30)),
        identity: identity.map(str::to_owned),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// Runs every check against stores built by `make`. Each check gets a new
/// store and its own clock starting at the current time.
pub async fn run_all<F, Fut, S>(make: F)
where
    F: Fn(&ManualClock) -> Fut,
    Fut: Future<Output = S>,
    S: SessionStore,
{
    macro_rules! check {
        ($name:ident) => {{
            let clock = ManualClock::starting_now();
            let store = make(&clock).await;
            $name(&store, &clock).await;
        }};
    }
    check!(load_of_unknown_id_is_none);
    check!(create_then_load_round_trips);
    check!(create_never_adopts_a_live_id);
    check!(save_is_compare_and_set);
    check!(save_after_delete_does_not_resurrect);
    check!(touch_moves_expiry_without_rewriting);
    check!(touch_after_delete_does_not_resurrect);
    check!(expiry_boundary_is_exact);
    check!(identity_listing_and_deletion);
    check!(identity_index_follows_login_and_logout);
    check!(large_and_empty_payloads_round_trip);
    check!(undecodable_bytes_are_returned_as_stored);
    check!(sessions_without_deadline_are_kept);
}

async fn load_of_unknown_id_is_none<S: SessionStore>(store: &S, _clock: &ManualClock) {
    assert_eq!(
        store.load(&SessionId::random()).await.unwrap(),
        None,
        "unknown id must load as None"
    );
    assert!(
        !store.delete(&SessionId::random()).await.unwrap(),
        "deleting an unknown id deletes nothing"
    );
}

async fn create_then_load_round_trips<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = stored(clock, Some("user-a"), b"hello");
    assert_eq!(
        store.create(&session).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        store.load(&session.id).await.unwrap(),
        Some(session),
        "load returns what create stored"
    );
}

async fn create_never_adopts_a_live_id<S: SessionStore>(store: &S, clock: &ManualClock) {
    let first = stored(clock, Some("admin-b"), b"admin data");
    assert_eq!(store.create(&first).await.unwrap(), CreateOutcome::Created);

    let mut colliding = stored(clock, Some("user-a"), b"attacker");
    colliding.id = first.id.clone();
    assert_eq!(
        store.create(&colliding).await.unwrap(),
        CreateOutcome::IdTaken,
        "create must be insert-if-absent"
    );
    assert_eq!(
        store.load(&first.id).await.unwrap(),
        Some(first),
        "a collision must not change the live record"
    );
}

async fn save_is_compare_and_set<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = stored(clock, None, b"v1");
    store.create(&session).await.unwrap();

    let mut second = session.clone();
    second.version = 2;
    second.payload = Bytes::from_static(b"v2");
    assert_eq!(store.save(&second, 1).await.unwrap(), SaveOutcome::Saved);

    let mut stale = session.clone();
    stale.version = 2;
    stale.payload = Bytes::from_static(b"stale");
    assert_eq!(
        store.save(&stale, 1).await.unwrap(),
        SaveOutcome::Conflict,
        "a save with an old expected version must conflict"
    );
    assert_eq!(
        store.load(&session.id).await.unwrap(),
        Some(second),
        "a conflicting save writes nothing"
    );
}

async fn save_after_delete_does_not_resurrect<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = stored(clock, Some("user-a"), b"data");
    store.create(&session).await.unwrap();
    assert!(store.delete(&session.id).await.unwrap());

    let mut late = session.clone();
    late.version = 2;
    assert_eq!(store.save(&late, 1).await.unwrap(), SaveOutcome::Missing);
    assert_eq!(
        store.load(&session.id).await.unwrap(),
        None,
        "a save after delete must not resurrect"
    );
    assert!(store.list_by_identity("user-a").await.unwrap().is_empty());
}

async fn touch_moves_expiry_without_rewriting<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = stored(clock, None, b"payload");
    store.create(&session).await.unwrap();

    let later = clock.now() + Duration::minutes(45);
    assert_eq!(
        store.touch(&session.id, Some(later), 1).await.unwrap(),
        SaveOutcome::Saved
    );
    let loaded = store
        .load(&session.id)
        .await
        .unwrap()
        .expect("touched session is live");
    assert_eq!(loaded.expires_at, Some(later));
    assert_eq!(loaded.payload, session.payload);
    assert_eq!(loaded.version, 1, "touch keeps the version");

    clock.advance(Duration::minutes(40));
    assert!(
        store.load(&session.id).await.unwrap().is_some(),
        "the touched deadline applies"
    );

    assert_eq!(
        store.touch(&session.id, Some(later), 7).await.unwrap(),
        SaveOutcome::Conflict
    );
}

async fn touch_after_delete_does_not_resurrect<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = stored(clock, None, b"payload");
    store.create(&session).await.unwrap();
    store.delete(&session.id).await.unwrap();
    let later = clock.now() + Duration::minutes(45);
    assert_eq!(
        store.touch(&session.id, Some(later), 1).await.unwrap(),
        SaveOutcome::Missing
    );
    assert_eq!(store.load(&session.id).await.unwrap(), None);
}

async fn expiry_boundary_is_exact<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = stored(clock, Some("user-a"), b"data");
    store.create(&session).await.unwrap();

    clock.advance(Duration::minutes(30) - Duration::milliseconds(1));
    assert!(
        store.load(&session.id).await.unwrap().is_some(),
        "live one millisecond before the deadline"
    );

    clock.advance(Duration::milliseconds(1));
    assert_eq!(
        store.load(&session.id).await.unwrap(),
        None,
        "expired at the deadline"
    );

    let mut late = session.clone();
    late.version = 2;
    late.expires_at = Some(clock.now() + Duration::minutes(30));
    assert_eq!(
        store.save(&late, 1).await.unwrap(),
        SaveOutcome::Missing,
        "an expired record is never revived"
    );
    assert!(
        store.list_by_identity("user-a").await.unwrap().is_empty(),
        "expired sessions are not listed"
    );
}

async fn identity_listing_and_deletion<S: SessionStore>(store: &S, clock: &ManualClock) {
    let a1 = stored(clock, Some("user-a"), b"1");
    let a2 = stored(clock, Some("user-a"), b"2");
    let b1 = stored(clock, Some("admin-b"), b"3");
    let anonymous = stored(clock, None, b"4");
    for session in [&a1, &a2, &b1, &anonymous] {
        store.create(session).await.unwrap();
    }

    let mut listed = store.list_by_identity("user-a").await.unwrap();
    listed.sort_by_key(|id| id.encode());
    let mut expected = vec![a1.id.clone(), a2.id.clone()];
    expected.sort_by_key(|id| id.encode());
    assert_eq!(listed, expected);

    assert_eq!(store.delete_by_identity("user-a").await.unwrap(), 2);
    assert_eq!(store.load(&a1.id).await.unwrap(), None);
    assert_eq!(store.load(&a2.id).await.unwrap(), None);
    assert!(
        store.load(&b1.id).await.unwrap().is_some(),
        "other users are untouched"
    );
    assert!(
        store.load(&anonymous.id).await.unwrap().is_some(),
        "anonymous sessions are untouched"
    );
    assert_eq!(store.delete_by_identity("nobody").await.unwrap(), 0);
}

async fn identity_index_follows_login_and_logout<S: SessionStore>(store: &S, clock: &ManualClock) {
    let anonymous = stored(clock, None, b"cart");
    store.create(&anonymous).await.unwrap();

    let mut signed_in = anonymous.clone();
    signed_in.version = 2;
    signed_in.identity = Some("user-a".into());
    assert_eq!(store.save(&signed_in, 1).await.unwrap(), SaveOutcome::Saved);
    assert_eq!(
        store.list_by_identity("user-a").await.unwrap(),
        vec![anonymous.id.clone()]
    );

    let mut signed_out = signed_in.clone();
    signed_out.version = 3;
    signed_out.identity = None;
    assert_eq!(
        store.save(&signed_out, 2).await.unwrap(),
        SaveOutcome::Saved
    );
    assert!(store.list_by_identity("user-a").await.unwrap().is_empty());
    assert_eq!(store.load(&anonymous.id).await.unwrap(), Some(signed_out));
}

async fn large_and_empty_payloads_round_trip<S: SessionStore>(store: &S, clock: &ManualClock) {
    let empty = stored(clock, None, b"");
    let large_bytes: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let large = stored(clock, None, &large_bytes);
    for session in [&empty, &large] {
        store.create(session).await.unwrap();
        assert_eq!(
            store.load(&session.id).await.unwrap().as_ref(),
            Some(session)
        );
    }
}

async fn undecodable_bytes_are_returned_as_stored<S: SessionStore>(store: &S, clock: &ManualClock) {
    #[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
    struct Data {
        user: Option<String>,
    }
    impl SessionData for Data {
        fn identity(&self) -> Option<String> {
            self.user.clone()
        }
    }

    let garbage = stored(clock, None, b"\xff\x00not a record");
    store.create(&garbage).await.unwrap();
    let loaded = store
        .load(&garbage.id)
        .await
        .unwrap()
        .expect("stores keep bytes they cannot read");
    assert_eq!(loaded.payload, garbage.payload);
    assert!(
        SessionRecord::<Data>::from_stored(loaded, &RecordCodec::default()).is_err(),
        "undecodable bytes are an error, never a panic"
    );
}

async fn sessions_without_deadline_are_kept<S: SessionStore>(store: &S, clock: &ManualClock) {
    let mut session = stored(clock, None, b"forever");
    session.expires_at = None;
    store.create(&session).await.unwrap();
    clock.advance(Duration::days(365));
    assert_eq!(store.load(&session.id).await.unwrap(), Some(session));
}
