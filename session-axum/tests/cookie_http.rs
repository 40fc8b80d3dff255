//! The HTTP cases that apply to the encrypted cookie store, through the
//! real layer: the whole session travels in the cookie.

mod support;

use axum::http::{Method, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use session_axum::{Clock, ManualClock};
use support::{attributes, Harness, SECRET};
use time::Duration;

fn harness(revocations: bool) -> Harness {
    Harness::with_cookie_store(ManualClock::starting_now(), revocations, |b| b, None)
}

fn value(cookie: &str) -> &str {
    cookie.trim_start_matches("id=")
}

#[tokio::test]
async fn login_round_trips_through_the_cookie_alone() {
    let h = harness(false);
    let cart = h.post("/cart/add?item=x", None).await.cookie();
    let login = h.login("user-a", Some(&cart)).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let v1 = login.cookie();
    assert_ne!(v1, cart, "login re-seals under a new session id");
    assert_eq!(h.get("/me", Some(&v1)).await.body, "user-a");
    assert_eq!(h.get("/cart", Some(&v1)).await.body, "[x]");
    assert_eq!(h.probe.count().await, 0, "no server-side state");
}

#[tokio::test]
async fn logout_sends_a_removal_cookie() {
    let h = harness(false);
    let v1 = h.login("user-a", None).await.cookie();
    let logout = h.post("/logout", Some(&v1)).await;
    let removal = logout.session_set_cookie();
    assert!(removal.starts_with("id=;"), "{removal}");
    assert!(attributes(&removal).contains(&"Max-Age=0".to_owned()));
    // What the browser keeps after the removal: no cookie at all.
    assert_eq!(h.get("/me", None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn copied_cookie_is_revoked_by_logout_when_revocations_are_configured() {
    let h = harness(true);
    let v1 = h.login("user-a", None).await.cookie();
    assert_eq!(
        h.post("/logout", Some(&v1)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        h.get("/me", Some(&v1)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn copied_cookie_stays_valid_without_revocations() {
    // The documented limit of fully stateless mode.
    let h = harness(false);
    let v1 = h.login("user-a", None).await.cookie();
    h.post("/logout", Some(&v1)).await;
    assert_eq!(h.get("/me", Some(&v1)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn pre_login_cookie_is_revoked_by_rotation() {
    let h = harness(true);
    let v0 = h.post("/cart/add?item=x", None).await.cookie();
    let v1 = h.login("user-a", Some(&v0)).await.cookie();
    assert_eq!(h.get("/cart", Some(&v0)).await.body, "[]");
    assert_eq!(h.get("/cart", Some(&v1)).await.body, "[x]");
}

#[tokio::test]
async fn expired_cookie_is_no_session() {
    let clock = ManualClock::starting_now();
    let h = Harness::with_cookie_store(
        clock.clone(),
        false,
        |b| b.idle_timeout(Some(Duration::minutes(15))),
        None,
    );
    let v1 = h.login("user-a", None).await.cookie();
    clock.advance(Duration::minutes(16));
    let me = h.get("/me", Some(&v1)).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn reads_slide_by_resealing_the_cookie() {
    let clock = ManualClock::starting_now();
    let h = Harness::with_cookie_store(
        clock.clone(),
        false,
        |b| {
            b.idle_timeout(Some(Duration::seconds(10)))
                .refresh_interval(Duration::seconds(2))
        },
        None,
    );
    let mut cookie = h.login("user-a", None).await.cookie();
    for _ in 0..5 {
        clock.advance(Duration::seconds(4));
        let response = h.get("/me", Some(&cookie)).await;
        assert_eq!(response.status, StatusCode::OK);
        cookie = response.cookie();
    }
    clock.advance(Duration::seconds(11));
    assert_eq!(
        h.get("/me", Some(&cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn remember_me_sets_max_age() {
    let h = harness(false);
    let login = h
        .post_form("/login", None, "user=user-a&pass=pw&remember=1")
        .await;
    assert!(
        login.session_set_cookie().contains("Max-Age=5184000"),
        "{}",
        login.session_set_cookie()
    );
    h.clock.advance(Duration::minutes(31));
    assert_eq!(
        h.get("/me", Some(&login.cookie())).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn flash_survives_the_redirect_once() {
    let h = harness(false);
    let set = h.post("/flash?m=saved", None).await;
    let inbox = h.get("/inbox", Some(&set.cookie())).await;
    assert_eq!(inbox.body, "notice: saved\n");
    let after = inbox.cookie();
    assert_eq!(h.get("/inbox", Some(&after)).await.body, "");
}

/// Finds the note size whose cookie header is exactly `target` bytes long,
/// or `None` when base64 steps over that length for this attribute set.
async fn note_size_for(h: &Harness, cookie: &str, target: usize) -> Option<usize> {
    let probe = h.post("/notes?size=0", Some(cookie)).await;
    let base = probe.session_set_cookie().len();
    let start = (target.saturating_sub(base) * 3 / 4).saturating_sub(8);
    for size in start..start + 64 {
        let response = h.post(&format!("/notes?size={size}"), Some(cookie)).await;
        if response.status != StatusCode::NO_CONTENT {
            return None;
        }
        let len = response.session_set_cookie().len();
        if len == target {
            return Some(size);
        }
        if len > target {
            return None;
        }
    }
    None
}

#[tokio::test]
async fn cookie_of_4096_bytes_is_sent_and_4097_is_refused() {
    // Base64 output is never 1 more than a multiple of 4 long, so some
    // attribute lengths cannot reach 4096 exactly; a Path of another length
    // shifts the header by a few bytes.
    for path in ["/", "/a", "/ab", "/abc"] {
        let h = Harness::with_cookie_store(
            ManualClock::starting_now(),
            false,
            |b| b.compression_threshold(None).path(path),
            None,
        );
        let v1 = h.login("user-a", None).await.cookie();
        let Some(size) = note_size_for(&h, &v1, 4096).await else {
            continue;
        };

        let fits = h.post(&format!("/notes?size={size}"), Some(&v1)).await;
        assert_eq!(fits.status, StatusCode::NO_CONTENT);
        assert_eq!(fits.session_set_cookie().len(), 4096);

        // One more byte of data makes the header at least 4097 bytes.
        let refused = h
            .post(&format!("/notes?size={}", size + 1), Some(&v1))
            .await;
        assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(refused.body, "Session is too large to be saved");
        assert!(
            refused.set_cookies().is_empty(),
            "no oversized cookie leaves the server"
        );

        // The cookie the browser already has stays valid with the old data.
        assert_eq!(h.get("/me", Some(&v1)).await.body, "user-a");
        return;
    }
    panic!("no Path length made a 4096-byte cookie reachable");
}

#[tokio::test]
async fn retired_key_is_accepted_and_resealed() {
    let clock = ManualClock::starting_now();
    let old = Harness::with_cookie_store(clock.clone(), false, |b| b, None);
    let v1 = old.login("user-a", None).await.cookie();

    let new_secret = b"a brand new secret of 32 bytes!!";
    let rotated = Harness::with_cookie_store(
        clock.clone(),
        false,
        |b| b.secret(new_secret).retired_secret(SECRET),
        None,
    );
    let me = rotated.get("/me", Some(&v1)).await;
    assert_eq!(me.status, StatusCode::OK);
    let resealed = me.cookie();
    assert_ne!(resealed, v1, "re-sealed under the current key");

    let only_new = Harness::with_cookie_store(clock, false, |b| b.secret(new_secret), None);
    assert_eq!(
        only_new.get("/me", Some(&v1)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(only_new.get("/me", Some(&resealed)).await.body, "user-a");
}

#[tokio::test]
async fn tampered_cookies_are_no_session_and_never_500() {
    let h = harness(false);
    let v1 = h.login("user-a", None).await.cookie();
    let token = value(&v1).to_owned();
    let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let middle = raw.len() / 2;
    raw[middle] ^= 1;
    let flipped = URL_SAFE_NO_PAD.encode(&raw);
    let other_name = {
        let other = Harness::with_cookie_store(
            ManualClock::starting_now(),
            false,
            |b| b.cookie_name("other"),
            None,
        );
        let set_cookie = other.login("user-a", None).await.set_cookies().remove(0);
        set_cookie
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("other=")
            .to_owned()
    };
    let standard_alphabet =
        base64::engine::general_purpose::STANDARD.encode(URL_SAFE_NO_PAD.decode(&token).unwrap());
    for bad in [
        flipped,
        token[..token.len() - 5].to_owned(),
        format!("{token}.extra"),
        format!("{token}=="),
        standard_alphabet,
        other_name,
        "!!not base64!!".to_owned(),
        "A".repeat(10_000),
    ] {
        let cookie = format!("id={bad}");
        let me = h.get("/me", Some(&cookie)).await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED, "{bad:.60}");
        let public = h.get("/public", Some(&cookie)).await;
        assert_eq!(public.status, StatusCode::OK);
    }
    assert_eq!(h.get("/me", Some(&v1)).await.body, "user-a");
}

#[tokio::test]
async fn identical_sessions_seal_to_distinct_cookies() {
    let h = harness(false);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2_000 {
        let cookie = h.post("/cart/add?item=x", None).await.cookie();
        assert!(seen.insert(cookie), "nonce reuse");
    }
}

#[tokio::test]
async fn cookie_attributes_match_on_create_rotate_and_delete() {
    let h = Harness::with_cookie_store(
        ManualClock::starting_now(),
        false,
        |b| b.domain("example.test").secure(true),
        None,
    );
    let scope = |set_cookie: &str| -> Vec<String> {
        attributes(set_cookie)
            .into_iter()
            .filter(|a| !a.starts_with("Max-Age") && !a.starts_with("Expires"))
            .collect()
    };
    let expected = [
        "Domain=example.test",
        "HttpOnly",
        "Path=/",
        "SameSite=Lax",
        "Secure",
    ];
    let create = h.post("/cart/add?item=x", None).await;
    assert_eq!(scope(&create.session_set_cookie()), expected);
    let rotate = h.login("user-a", Some(&create.cookie())).await;
    assert_eq!(scope(&rotate.session_set_cookie()), expected);
    let delete = h.post("/logout", Some(&rotate.cookie())).await;
    assert_eq!(scope(&delete.session_set_cookie()), expected);
}

#[tokio::test]
async fn role_guard_works_on_the_cookie_store() {
    let h = harness(false);
    assert_eq!(h.get("/admin", None).await.status, StatusCode::UNAUTHORIZED);
    let user = h.login("user-a", None).await.cookie();
    assert_eq!(
        h.get("/admin", Some(&user)).await.status,
        StatusCode::FORBIDDEN
    );
    let admin = h.login("admin-b", None).await.cookie();
    assert_eq!(h.get("/admin", Some(&admin)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn test_cookie_helper_works_with_the_cookie_store() {
    let h = harness(false);
    let cookie = h
        .layer
        .test_cookie(support::TestSession {
            user: Some("user-a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        h.get("/me", Some(cookie.to_str().unwrap())).await.body,
        "user-a"
    );
    let _ = h.clock.now();
}

/// A cookie that was already opened, and so is served from the layer's
/// cache, is still refused once its session is revoked.
#[tokio::test]
async fn cached_cookie_is_refused_after_logout() {
    let h = harness(true);
    let v1 = h.login("user-a", None).await.cookie();
    for _ in 0..3 {
        assert_eq!(h.get("/me", Some(&v1)).await.status, StatusCode::OK);
    }
    assert_eq!(
        h.post("/logout", Some(&v1)).await.status,
        StatusCode::SEE_OTHER
    );
    let replay = h.get("/me", Some(&v1)).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
}

/// A cookie served from the layer's cache still expires on the layer's clock.
#[tokio::test]
async fn cached_cookie_still_expires() {
    let clock = ManualClock::starting_now();
    let h = Harness::with_cookie_store(
        clock.clone(),
        false,
        |b| {
            b.idle_timeout(Some(Duration::minutes(15)))
                .refresh_interval(Duration::minutes(10))
        },
        None,
    );
    let v1 = h.login("user-a", None).await.cookie();
    for _ in 0..3 {
        let me = h.get("/me", Some(&v1)).await;
        assert_eq!(me.status, StatusCode::OK);
        assert!(
            me.session_cookies().is_empty(),
            "no reseal before the refresh"
        );
    }
    clock.advance(Duration::minutes(16));
    assert_eq!(
        h.get("/me", Some(&v1)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// With the cache off, the cookie store behaves the same.
#[tokio::test]
async fn cookie_store_works_without_the_record_cache() {
    let clock = ManualClock::starting_now();
    let config = support::test_config(&clock, |b| b);
    let store = session_axum::CookieStore::new(config.clone());
    let layer =
        session_axum::SessionLayer::<support::TestSession>::with_cookie_store(store, config)
            .record_cache(0);
    let app = support::app::router(layer);

    let added = support::send_to(&app, Method::POST, "/cart/add?item=x", None).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT);
    let cookie = added.cookie();
    for _ in 0..2 {
        let read = support::send_to(&app, Method::GET, "/cart", Some(&cookie)).await;
        assert_eq!(read.body, "[x]");
    }
}
