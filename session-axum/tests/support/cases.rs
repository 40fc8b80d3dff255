//! The HTTP cases every server-side store must pass, written once.
//!
//! `http_cases!(factory_expression)` expands to one `#[tokio::test]` per
//! case in the calling test file.

use std::collections::HashSet;

use axum::http::{HeaderMap, Method, StatusCode};
use session_axum::session_core::{SameSite, SessionConfigBuilder, SessionId};
use session_axum::Clock;
use time::Duration;

use super::{attributes, id_of, sid, Harness, ScriptedIds, StoreFactory, SECRET};

/// Calls `$callback!($($args)*; <every case name>)`, so that the list of
/// cases is written once.
#[macro_export]
macro_rules! http_case_names {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback!($($args)*;
            ids_are_unique_fixed_length_and_random,
            unknown_signed_ids_are_never_adopted,
            forged_cookies_never_reach_the_store,
            create_never_adopts_a_colliding_id,
            rotation_never_adopts_a_live_id,
            login_rotates_the_id_and_kills_the_old_one,
            rotation_survives_every_order_of_changes,
            regenerate_deletes_the_pre_login_record,
            concurrent_writes_are_serialised,
            logout_racing_a_slow_request_stays_logged_out,
            remember_me_moves_store_and_cookie_deadlines,
            remember_me_sets_max_age_on_browser_session_default,
            reads_slide_the_idle_deadline,
            browser_session_cookie_has_no_lifetime,
            absolute_lifetime_is_never_extended,
            restored_browser_cookie_expires_server_side,
            logout_deletes_the_record,
            logout_can_keep_an_allow_listed_key,
            lifecycle_hooks_fire_once,
            removal_cookie_keeps_domain_path_and_flags,
            every_session_cookie_carries_the_same_attributes,
            cookie_path_is_explicit,
            rotation_without_data_change_sends_the_cookie,
            typed_values_round_trip,
            flash_is_shown_once_after_a_redirect,
            untouched_routes_cost_nothing,
            other_set_cookie_headers_are_kept,
            session_responses_are_not_cacheable,
            duplicate_and_malformed_cookie_pairs_are_tolerated,
            ids_in_the_query_string_are_ignored,
            role_guard_answers_401_403_and_200,
            ip_binding_detects_or_destroys,
            user_agent_binding_tolerates_patch_updates,
            undecodable_records_are_treated_as_absent,
            role_changes_apply_on_the_next_request,
            renewal_moves_the_id_with_a_grace_window,
            concurrent_requests_renew_once,
        );
    };
}

/// Expands to one `#[tokio::test]` per case, each with a fresh factory.
#[macro_export]
macro_rules! http_cases {
    ($factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let factory = $factory;
                $crate::support::cases::$case(&factory).await;
            }
        )*
    };
    ($factory:expr) => {
        $crate::http_case_names!(http_cases!($factory));
    };
}

/// Runs every case in sequence inside the calling async function, with a
/// fresh factory from `$make()` for each; for stores that are costly to
/// start once per test, such as a Redis Cluster.
#[macro_export]
macro_rules! http_cases_in_sequence {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            {
                let factory = $make();
                eprintln!("case {}", stringify!($case));
                $crate::support::cases::$case(&factory).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::http_case_names!(http_cases_in_sequence!($make));
    };
}

fn none(builder: SessionConfigBuilder) -> SessionConfigBuilder {
    builder
}

/// Ids from the OS CSPRNG, fixed length, no repeats.
pub async fn ids_are_unique_fixed_length_and_random(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let mut seen = HashSet::new();
    for _ in 0..100_000 {
        let response = h.post("/cart/add?item=x", None).await;
        assert_eq!(response.status, StatusCode::NO_CONTENT);
        let cookie = response.cookie();
        let value = cookie.trim_start_matches("id=");
        assert_eq!(value.len(), 43 + 1 + 22, "fixed length: {value}");
        assert!(seen.insert(value.to_owned()), "duplicate session id");
    }
    assert_eq!(h.probe.count().await, 100_000);
}

/// A validly signed id the server never issued is not adopted.
pub async fn unknown_signed_ids_are_never_adopted(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let before = h.probe.count().await;
    for _ in 0..1_000 {
        let chosen = SessionId::random().to_cookie_value(h.config.keys(), "id");
        let response = h.get("/me", Some(&format!("id={chosen}"))).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(h.probe.count().await, before, "unknown ids create nothing");

    let chosen_id = SessionId::random();
    let chosen = chosen_id.to_cookie_value(h.config.keys(), "id");
    let response = h
        .post("/cart/add?item=x", Some(&format!("id={chosen}")))
        .await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    let issued = id_of(&response.cookie());
    assert_ne!(issued, chosen_id, "a fresh server id is issued");
    assert_eq!(
        h.store.load(&chosen_id).await.unwrap(),
        None,
        "the chosen id never becomes a key"
    );
}

/// Malformed and forged values are rejected before any store call.
pub async fn forged_cookies_never_reach_the_store(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let login = h.login("user-a", None).await;
    let good = login.cookie();
    let value = good.trim_start_matches("id=");
    let mut flipped = value.as_bytes().to_vec();
    flipped[50] = if flipped[50] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let forged = format!("{}.{}", SessionId::random().encode(), &value[44..]);
    for bad in [
        "id=".to_owned(),
        "id=short".to_owned(),
        format!("id={flipped}"),
        format!("id={forged}"),
        format!("id={}", &value[..43]),
        format!("id={value}A"),
        format!("id={}", "x".repeat(10_000)),
        "id=\u{e9}\u{e9}".to_owned(),
    ] {
        let response = h.get("/me", Some(&bad)).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{bad:.80}");
        let public = h.get("/public", Some(&bad)).await;
        assert_eq!(public.status, StatusCode::OK);
        assert!(
            public.set_cookies().is_empty(),
            "untouched route sends no cookie"
        );
    }
    assert_eq!(
        h.get("/me", Some(&good)).await.body,
        "user-a",
        "the real session is intact"
    );
}

/// Create is insert-if-absent; a colliding id is redrawn.
pub async fn create_never_adopts_a_colliding_id(factory: &dyn StoreFactory) {
    let h = Harness::with_ids(factory, ScriptedIds::new([sid(1), sid(1), sid(2)]), none).await;
    let login = h.login("user-a", None).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert_eq!(id_of(&login.cookie()), sid(1));

    let fresh = h.post("/cart/add?item=x", None).await;
    assert_eq!(id_of(&fresh.cookie()), sid(2), "the collision was redrawn");

    let s1 = login.cookie();
    assert_eq!(h.get("/me", Some(&s1)).await.body, "user-a");
    assert_eq!(
        h.get("/cart", Some(&s1)).await.body,
        "[]",
        "user-a's cart is untouched"
    );
}

/// Rotation uses the same insert-if-absent path.
pub async fn rotation_never_adopts_a_live_id(factory: &dyn StoreFactory) {
    let h = Harness::with_ids(
        factory,
        ScriptedIds::new([sid(9), sid(0), sid(9), sid(1)]),
        none,
    )
    .await;
    let admin = h.login("admin-b", None).await;
    assert_eq!(id_of(&admin.cookie()), sid(9));

    let anonymous = h.post("/cart/add?item=x", None).await;
    assert_eq!(id_of(&anonymous.cookie()), sid(0));

    let login = h.login("user-a", Some(&anonymous.cookie())).await;
    assert_eq!(id_of(&login.cookie()), sid(1), "user-a skips admin-b's id");
    assert_eq!(h.get("/me", Some(&admin.cookie())).await.body, "admin-b");
    assert_eq!(h.get("/cart", Some(&admin.cookie())).await.body, "[]");
}

/// Login rotates; the old id is gone.
pub async fn login_rotates_the_id_and_kills_the_old_one(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let page = h.get("/login", None).await;
    let s0 = page.cookie();

    let login = h.login("user-a", Some(&s0)).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert_eq!(login.location(), Some("/dashboard"));
    let s1 = login.cookie();
    assert_ne!(id_of(&s0), id_of(&s1));

    assert_eq!(
        h.get("/me", Some(&s0)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.store.load(&id_of(&s0)).await.unwrap(), None);
    let me = h.get("/me", Some(&s1)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body, "user-a");
}

/// Regenerate is never cancelled by later changes.
pub async fn rotation_survives_every_order_of_changes(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    for order in ["a", "b", "c"] {
        let before = h.post("/cart/add?item=x", None).await.cookie();
        let login = h
            .post_form(
                &format!("/login?order={order}"),
                Some(&before),
                "user=user-a&pass=pw",
            )
            .await;
        let after = login.cookie();
        assert_ne!(id_of(&before), id_of(&after), "order {order}");
        assert_eq!(
            h.get("/me", Some(&before)).await.status,
            StatusCode::UNAUTHORIZED,
            "order {order}"
        );
        assert_eq!(
            h.get("/me", Some(&after)).await.body,
            "user-a",
            "order {order}"
        );
        let expected_cart = if order == "c" { "[]" } else { "[x]" };
        assert_eq!(
            h.get("/cart", Some(&after)).await.body,
            expected_cart,
            "order {order}"
        );
    }
}

/// The pre-login record is removed; data moves to the new id.
pub async fn regenerate_deletes_the_pre_login_record(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let s0 = h.post("/cart/add?item=x", None).await.cookie();
    let s1 = h.login("user-a", Some(&s0)).await.cookie();
    assert_eq!(
        h.get("/me", Some(&s0)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.get("/cart", Some(&s0)).await.body, "[]");
    assert_eq!(h.store.load(&id_of(&s0)).await.unwrap(), None);
    assert_eq!(h.get("/cart", Some(&s1)).await.body, "[x]");
}

/// Two concurrent read-modify-write requests never lose an update.
pub async fn concurrent_writes_are_serialised(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    for round in 0..50 {
        let s1 = h.login("user-a", None).await.cookie();
        let (x, y) = tokio::join!(
            h.post("/cart/add?item=x&delay_ms=5", Some(&s1)),
            h.post("/cart/add?item=y&delay_ms=5", Some(&s1)),
        );
        assert_eq!(x.status, StatusCode::NO_CONTENT, "round {round}");
        assert_eq!(y.status, StatusCode::NO_CONTENT, "round {round}");
        let cart = h.get("/cart", Some(&s1)).await.body;
        assert!(cart == "[x,y]" || cart == "[y,x]", "round {round}: {cart}");
    }
}

/// A slow request that began before logout does not resurrect it.
pub async fn logout_racing_a_slow_request_stays_logged_out(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let s1 = h.login("user-a", None).await.cookie();
    let slow = h.get("/slow", Some(&s1));
    let logout = async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        h.post("/logout", Some(&s1)).await
    };
    let (slow, logout) = tokio::join!(slow, logout);
    assert_eq!(slow.status, StatusCode::OK);
    assert!(
        slow.session_cookies().is_empty(),
        "the slow response re-sends no session cookie"
    );
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert_eq!(
        h.get("/me", Some(&s1)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.store.load(&id_of(&s1)).await.unwrap(), None);
}

/// A handler-chosen expiry moves the stored deadline too.
pub async fn remember_me_moves_store_and_cookie_deadlines(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let login = h
        .post_form("/login", None, "user=user-a&pass=pw&remember=1")
        .await;
    let s1 = login.cookie();
    let stored = h.store.load(&id_of(&s1)).await.unwrap().unwrap();
    assert_eq!(stored.expires_at, Some(h.clock.now() + Duration::days(60)));

    h.clock.advance(Duration::minutes(31));
    assert_eq!(h.get("/me", Some(&s1)).await.status, StatusCode::OK);
}

/// Remember-me gives a Max-Age even when the default is a browser-session cookie.
pub async fn remember_me_sets_max_age_on_browser_session_default(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let login = h
        .post_form("/login", None, "user=user-a&pass=pw&remember=1")
        .await;
    let set_cookie = login.session_set_cookie();
    assert!(set_cookie.contains("; Max-Age=5184000"), "{set_cookie}");
    let expires = (h.clock.now() + Duration::days(60))
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap();
    let day = &expires[..16];
    assert!(
        set_cookie.contains(&format!("Expires={day}")),
        "{set_cookie} vs {expires}"
    );
}

/// Read-only requests slide the idle deadline.
pub async fn reads_slide_the_idle_deadline(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, |b| {
        b.idle_timeout(Some(Duration::seconds(10)))
            .refresh_interval(Duration::seconds(2))
    })
    .await;
    let s1 = h.login("user-a", None).await.cookie();
    for _ in [5, 9, 13] {
        h.clock.advance(Duration::seconds(4));
        let response = h.get("/me", Some(&s1)).await;
        assert_eq!(response.status, StatusCode::OK);
        assert!(
            response.session_cookies().is_empty(),
            "browser-session cookie is not re-sent"
        );
    }
    // Last activity was at t = 12, so the session lives until t = 22.
    h.clock.advance(Duration::seconds(9));
    assert_eq!(h.get("/me", Some(&s1)).await.status, StatusCode::OK);
    h.clock.advance(Duration::seconds(11));
    assert_eq!(
        h.get("/me", Some(&s1)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Browser-session cookies carry neither Max-Age nor Expires.
pub async fn browser_session_cookie_has_no_lifetime(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let set_cookie = h.post("/cart/add?item=x", None).await.session_set_cookie();
    assert!(!set_cookie.contains("Max-Age"), "{set_cookie}");
    assert!(!set_cookie.contains("Expires"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert_eq!(
        h.get("/cart", Some(&cookie)).await.body,
        "[x]",
        "the record persists"
    );
}

/// Activity never extends the absolute lifetime.
pub async fn absolute_lifetime_is_never_extended(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, |b| {
        b.idle_timeout(None)
            .absolute_lifetime(Some(Duration::hours(1)))
            .cookie_lifetime(session_axum::CookieLifetime::Persistent)
    })
    .await;
    let login = h.login("user-a", None).await;
    assert!(login.session_set_cookie().contains("Max-Age=3600"));
    let s1 = login.cookie();

    h.clock.advance(Duration::minutes(50));
    let add = h.post("/cart/add?item=x", Some(&s1)).await;
    let set_cookie = add.session_set_cookie();
    assert!(
        set_cookie.contains("Max-Age=600"),
        "time left, not a fresh hour: {set_cookie}"
    );

    h.clock.advance(Duration::minutes(11));
    assert_eq!(
        h.get("/me", Some(&s1)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Restored browser-session cookies still expire server-side.
pub async fn restored_browser_cookie_expires_server_side(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, |b| {
        b.idle_timeout(Some(Duration::minutes(15)))
            .absolute_lifetime(Some(Duration::hours(8)))
    })
    .await;
    let s1 = h.login("user-a", None).await.cookie();
    h.clock.advance(Duration::minutes(16));
    assert_eq!(
        h.get("/me", Some(&s1)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let s2 = h.login("user-a", None).await.cookie();
    for _ in 0..47 {
        h.clock.advance(Duration::minutes(10));
        assert_eq!(h.get("/me", Some(&s2)).await.status, StatusCode::OK);
    }
    h.clock
        .advance(Duration::minutes(10) + Duration::seconds(1));
    assert_eq!(
        h.get("/me", Some(&s2)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Logout removes the record; the old cookie is anonymous.
pub async fn logout_deletes_the_record(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let s1 = h.login("user-a", None).await.cookie();
    let logout = h.post("/logout", Some(&s1)).await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert_eq!(h.store.load(&id_of(&s1)).await.unwrap(), None);
    assert_eq!(
        h.get("/me", Some(&s1)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.store.list_by_identity("user-a").await.unwrap(),
        Vec::<SessionId>::new()
    );
}

/// Logout drops everything by default; an explicit allow-list keeps the locale.
pub async fn logout_can_keep_an_allow_listed_key(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    for (query, expected) in [("", "en"), ("?keep_locale=1", "fr")] {
        let s0 = {
            let response = h.post("/locale?l=fr", None).await;
            response.cookie()
        };
        let s1 = h.login("user-a", Some(&s0)).await.cookie();
        let logout = h.post(&format!("/logout{query}"), Some(&s1)).await;
        let after = logout.session_cookies();
        let cookie = after
            .iter()
            .find(|c| !c.starts_with("id=;"))
            .map(|c| c.split(';').next().unwrap().to_owned());
        let locale = h.get("/locale", cookie.as_deref()).await.body;
        assert_eq!(locale, expected, "logout{query}");
        if let Some(cookie) = cookie {
            assert_ne!(
                id_of(&cookie),
                id_of(&s1),
                "the kept locale lives under a new id"
            );
            assert_eq!(
                h.get("/me", Some(&cookie)).await.status,
                StatusCode::UNAUTHORIZED
            );
        }
    }
}

/// The destroy hook fires once; logout does not fire "started".
pub async fn lifecycle_hooks_fire_once(factory: &dyn StoreFactory) {
    use session_axum::{SessionEvent, SessionEventKind, SessionEvents};
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<SessionEvent>>>);
    impl SessionEvents for Recorder {
        fn on_event(&self, event: &SessionEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    let recorder = Recorder::default();
    let events = recorder.clone();
    let h = Harness::new(factory, move |b| b.events(events)).await;
    let s1 = h.login("user-a", None).await.cookie();
    let started: Vec<_> = recorder
        .0
        .lock()
        .unwrap()
        .drain(..)
        .map(|e| e.kind)
        .collect();
    assert_eq!(started, vec![SessionEventKind::Started]);

    h.post("/logout", Some(&s1)).await;
    let events: Vec<_> = recorder.0.lock().unwrap().drain(..).collect();
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![SessionEventKind::Loaded, SessionEventKind::Destroyed]
    );
    assert_eq!(events[1].digest, Some(id_of(&s1).digest(h.config.keys())));
}

/// The removal cookie keeps Domain, Path, Secure, SameSite.
pub async fn removal_cookie_keeps_domain_path_and_flags(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, |b| {
        b.domain("example.test")
            .secure(true)
            .same_site(SameSite::None)
    })
    .await;
    let login = h.login("user-a", None).await;
    assert_eq!(
        attributes(&login.session_set_cookie()),
        [
            "Domain=example.test",
            "HttpOnly",
            "Path=/",
            "SameSite=None",
            "Secure"
        ]
    );
    let s1 = login.cookie();
    let logout = h.post("/account/settings/logout", Some(&s1)).await;
    let removal = logout.session_set_cookie();
    assert!(removal.starts_with("id=;"), "{removal}");
    assert_eq!(
        attributes(&removal),
        [
            "Domain=example.test",
            "Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "HttpOnly",
            "Max-Age=0",
            "Path=/",
            "SameSite=None",
            "Secure"
        ]
    );
    assert_eq!(
        h.get("/me", Some(&s1)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Create, slide, rotate and delete carry one attribute set.
pub async fn every_session_cookie_carries_the_same_attributes(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, |b| {
        b.cookie_lifetime(session_axum::CookieLifetime::Persistent)
            .idle_timeout(Some(Duration::minutes(10)))
            .refresh_interval(Duration::minutes(1))
            .same_site(SameSite::Strict)
            .secure(true)
    })
    .await;
    let scope = |set_cookie: &str| -> Vec<String> {
        attributes(set_cookie)
            .into_iter()
            .filter(|a| !a.starts_with("Max-Age") && !a.starts_with("Expires"))
            .collect()
    };
    let expected = ["HttpOnly", "Path=/", "SameSite=Strict", "Secure"];

    let create = h.post("/cart/add?item=x", None).await;
    assert_eq!(scope(&create.session_set_cookie()), expected, "create");
    let s0 = create.cookie();

    h.clock.advance(Duration::minutes(2));
    let slide = h.get("/cart", Some(&s0)).await;
    let slide_cookie = slide.session_set_cookie();
    assert_eq!(scope(&slide_cookie), expected, "slide");
    assert!(slide_cookie.contains("Max-Age=600"), "{slide_cookie}");

    let rotate = h.login("user-a", Some(&s0)).await;
    assert_eq!(scope(&rotate.session_set_cookie()), expected, "rotate");

    let delete = h.post("/logout", Some(&rotate.cookie())).await;
    assert_eq!(scope(&delete.session_set_cookie()), expected, "delete");
}

/// Path is always explicit, so a cookie jar contains one `id`.
pub async fn cookie_path_is_explicit(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let page = h.get("/a/b/page", None).await;
    let set_cookie = page.session_set_cookie();
    assert!(
        attributes(&set_cookie).contains(&"Path=/".to_owned()),
        "{set_cookie}"
    );
    assert!(
        !set_cookie.contains("Domain"),
        "Domain is never taken from the request"
    );
}

/// A rotation with no data change still sends the new id.
pub async fn rotation_without_data_change_sends_the_cookie(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let s0 = h.post("/cart/add?item=x", None).await.cookie();
    let rotate = h.post("/rotate", Some(&s0)).await;
    let s1 = rotate.cookie();
    assert_ne!(id_of(&s0), id_of(&s1));
    assert!(
        h.store.load(&id_of(&s1)).await.unwrap().is_some(),
        "id in cookie == id in store"
    );
    assert_eq!(h.get("/cart", Some(&s1)).await.body, "[x]");
}

/// Typed values read back identical in the same and the next request.
pub async fn typed_values_round_trip(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let write = h.post("/prefs", None).await;
    let expected = format!("{:?}", Some(super::app::Prefs::sample()));
    assert_eq!(write.body, expected);
    assert_eq!(h.get("/prefs", Some(&write.cookie())).await.body, expected);
}

/// Flash survives the redirect, shows once, then disappears.
pub async fn flash_is_shown_once_after_a_redirect(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let set = h.post("/flash?m=saved", None).await;
    assert_eq!(set.status, StatusCode::SEE_OTHER);
    assert_eq!(set.location(), Some("/inbox"));
    let cookie = set.cookie();
    assert_eq!(
        h.get("/public", Some(&cookie)).await.body,
        "public",
        "an untouched route keeps the flash"
    );
    assert_eq!(h.get("/inbox", Some(&cookie)).await.body, "notice: saved\n");
    assert_eq!(h.get("/inbox", Some(&cookie)).await.body, "");
}

/// A route that ignores the session has no cost and no cookie.
pub async fn untouched_routes_cost_nothing(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let before = h.probe.count().await;
    let response = h.get("/public", None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.set_cookies().is_empty());
    assert!(response.headers.get("cache-control").is_none());
    let me = h.get("/me", None).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert!(
        me.session_cookies().is_empty(),
        "reading creates no session"
    );
    assert_eq!(h.probe.count().await, before);
}

/// Set-Cookie headers of the app are kept, never folded.
pub async fn other_set_cookie_headers_are_kept(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let response = h.post("/other-cookie", None).await;
    let cookies = response.set_cookies();
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    assert_eq!(cookies[0], "theme=dark; Path=/");
    assert_eq!(cookies[1], "lang=fr; Path=/");
    assert!(cookies[2].starts_with("id="));
}

/// Responses that set the session cookie are not storable.
pub async fn session_responses_are_not_cacheable(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let response = h.post("/cart/add?item=x", None).await;
    assert_eq!(response.headers.get("cache-control").unwrap(), "no-store");
}

/// A malformed unrelated pair does not hide the cookie; duplicates resolve in order.
pub async fn duplicate_and_malformed_cookie_pairs_are_tolerated(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let a = h.login("user-a", None).await.cookie();
    let b = h.login("admin-b", None).await.cookie();
    assert_eq!(
        h.get("/me", Some(&format!("junk; =; {a}; x"))).await.body,
        "user-a"
    );
    assert_eq!(
        h.get("/me", Some(&format!("{a}; {b}"))).await.body,
        "user-a"
    );
    assert_eq!(
        h.get("/me", Some(&format!("{b}; {a}"))).await.body,
        "admin-b"
    );
    assert_eq!(
        h.get("/me", Some(&format!("id=garbage; {b}"))).await.body,
        "admin-b"
    );
}

/// Ids are read only from the cookie.
pub async fn ids_in_the_query_string_are_ignored(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let a = h.login("user-a", None).await.cookie();
    let value = a.trim_start_matches("id=");
    let mut headers = HeaderMap::new();
    headers.insert("x-session-id", value.parse().unwrap());
    headers.insert("authorization", format!("Bearer {value}").parse().unwrap());
    let response = h
        .send_with(Method::GET, &format!("/me?id={value}"), None, headers, "")
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
}

/// Role guard: anonymous 401, wrong role 403, right role 200.
pub async fn role_guard_answers_401_403_and_200(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    assert_eq!(h.get("/admin", None).await.status, StatusCode::UNAUTHORIZED);
    let user = h.login("user-a", None).await.cookie();
    let forbidden = h.get("/admin", Some(&user)).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(forbidden.location(), None, "403 never redirects");
    let admin = h.login("admin-b", None).await.cookie();
    let ok = h.get("/admin", Some(&admin)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body, "admin");
}

fn from_ip(ip: &str, user_agent: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-test-peer", ip.parse().unwrap());
    headers.insert("user-agent", user_agent.parse().unwrap());
    headers
}

/// IP binding in detect and strict mode; X-Forwarded-For from an untrusted peer is ignored.
pub async fn ip_binding_detects_or_destroys(factory: &dyn StoreFactory) {
    use session_axum::BindingPolicy;

    for policy in [BindingPolicy::Detect, BindingPolicy::Strict] {
        let h = Harness::new(factory, move |b| b.bind_ip(true).binding_policy(policy)).await;
        let login = h
            .send_with(
                Method::POST,
                "/login",
                None,
                {
                    let mut headers = from_ip("198.51.100.10", "ExampleBrowser/120.0.1 (X11)");
                    headers.insert(
                        "content-type",
                        "application/x-www-form-urlencoded".parse().unwrap(),
                    );
                    headers
                },
                "user=user-a&pass=pw",
            )
            .await;
        let s1 = login.cookie();

        let mut spoofed = from_ip("203.0.113.20", "ExampleBrowser/120.0.1 (X11)");
        spoofed.insert("x-forwarded-for", "198.51.100.10".parse().unwrap());
        let moved = h
            .send_with(Method::GET, "/me", Some(&s1), spoofed, "")
            .await;
        match policy {
            BindingPolicy::Detect => {
                assert_eq!(moved.status, StatusCode::OK, "detect serves the session");
                assert!(h.store.load(&id_of(&s1)).await.unwrap().is_some());
            }
            _ => {
                assert_eq!(moved.status, StatusCode::UNAUTHORIZED, "strict rejects");
                assert_eq!(
                    h.store.load(&id_of(&s1)).await.unwrap(),
                    None,
                    "strict destroys"
                );
            }
        }
    }
}

/// A patch update of the browser keeps the session; another browser does not.
pub async fn user_agent_binding_tolerates_patch_updates(factory: &dyn StoreFactory) {
    use session_axum::BindingPolicy;

    let h = Harness::new(factory, |b| {
        b.bind_user_agent(true)
            .binding_policy(BindingPolicy::Strict)
    })
    .await;
    let mut headers = from_ip("198.51.100.10", "ExampleBrowser/120.0.1 (X11)");
    headers.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let s1 = h
        .send_with(Method::POST, "/login", None, headers, "user=user-a&pass=pw")
        .await
        .cookie();
    let before = h.probe.count().await;
    let patched = h
        .send_with(
            Method::GET,
            "/me",
            Some(&s1),
            from_ip("198.51.100.10", "ExampleBrowser/120.0.2 (X11)"),
            "",
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let other = h
        .send_with(
            Method::GET,
            "/me",
            Some(&s1),
            from_ip("198.51.100.10", "OtherBrowser/5"),
            "",
        )
        .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.probe.count().await,
        before - 1,
        "no new row per mismatch; the bound one is destroyed"
    );
}

/// A stored value that does not decode is "no session", never a 500.
pub async fn undecodable_records_are_treated_as_absent(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let s1 = h.login("user-a", None).await.cookie();
    let id = id_of(&s1);
    let mut stored = h.store.load(&id).await.unwrap().unwrap();
    let version = stored.version;
    stored.version += 1;
    stored.payload = bytes::Bytes::from_static(b"SR\x09\x00a future format");
    h.store.save(&stored, version).await.unwrap();

    assert_eq!(
        h.get("/me", Some(&s1)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.get("/public", Some(&s1)).await.status, StatusCode::OK);
    assert!(
        h.store.load(&id).await.unwrap().is_some(),
        "the unreadable record is not deleted"
    );
    let _ = SECRET;
}

/// A revoked role is refused on the next request; a granted one takes
/// effect with a new session id.
pub async fn role_changes_apply_on_the_next_request(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, none).await;
    let set_roles = |roles: &[&str]| {
        h.roles.lock().unwrap().insert(
            "user-a".to_owned(),
            roles.iter().map(|r| (*r).to_owned()).collect(),
        );
    };
    set_roles(&["viewer"]);
    let c1 = h.login("user-a", None).await.cookie();
    assert_eq!(
        h.get("/admin", Some(&c1)).await.status,
        StatusCode::FORBIDDEN
    );

    set_roles(&["viewer", "admin"]);
    let granted = h.get("/admin", Some(&c1)).await;
    assert_eq!(granted.status, StatusCode::OK);
    let c2 = granted.cookie();
    assert_ne!(
        id_of(&c1),
        id_of(&c2),
        "a privilege increase rotates the id"
    );
    assert_eq!(
        h.get("/me", Some(&c1)).await.status,
        StatusCode::UNAUTHORIZED
    );

    set_roles(&["viewer"]);
    let revoked = h.get("/admin", Some(&c2)).await;
    assert_eq!(
        revoked.status,
        StatusCode::FORBIDDEN,
        "the very next request sees the revocation"
    );
    assert!(
        revoked.session_cookies().is_empty(),
        "a loss of privilege needs no new id"
    );
    assert_eq!(h.get("/me", Some(&c2)).await.body, "user-a");
}

fn renewal(builder: SessionConfigBuilder) -> SessionConfigBuilder {
    builder
        .renewal_interval(Some(Duration::minutes(10)))
        .renewal_grace(Duration::seconds(30))
}

/// After the renewal interval a request moves the session to a new id; the
/// old id leads to the session for the grace window only.
pub async fn renewal_moves_the_id_with_a_grace_window(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, renewal).await;
    let created = h.post("/cart/add?item=x", None).await;
    let s1 = created.cookie();

    h.clock.advance(Duration::minutes(9));
    let early = h.get("/cart", Some(&s1)).await;
    assert_eq!(early.body, "[x]");
    assert!(early.session_cookies().is_empty(), "not due yet");

    h.clock.advance(Duration::minutes(1));
    let renewed = h.get("/cart", Some(&s1)).await;
    assert_eq!(renewed.status, StatusCode::OK);
    assert_eq!(renewed.body, "[x]");
    let s2 = renewed.cookie();
    assert_ne!(id_of(&s2), id_of(&s1), "a new id");
    assert_eq!(
        attributes(&renewed.session_set_cookie()),
        attributes(&created.session_set_cookie()),
        "the usual session cookie attributes"
    );

    // A request sent with the old cookie before the new one arrived.
    h.clock.advance(Duration::seconds(10));
    let in_flight = h.post("/cart/add?item=y", Some(&s1)).await;
    assert_eq!(in_flight.status, StatusCode::NO_CONTENT);
    assert_eq!(
        id_of(&in_flight.cookie()),
        id_of(&s2),
        "the old id leads to the renewed session, which is not renewed again"
    );
    assert_eq!(h.get("/cart", Some(&s2)).await.body, "[x,y]");

    h.clock.advance(Duration::seconds(20));
    let after_grace = h.get("/cart", Some(&s1)).await;
    assert_eq!(after_grace.body, "[]");
    assert_eq!(after_grace.session_cookies().len(), 1, "a removal cookie");
    assert_eq!(h.get("/cart", Some(&s2)).await.body, "[x,y]");

    // Ten minutes after its own issue, the second id is renewed in turn.
    h.clock.advance(Duration::minutes(10));
    let again = h.get("/cart", Some(&s2)).await;
    assert_eq!(again.body, "[x,y]");
    let s3 = again.cookie();
    assert_ne!(id_of(&s3), id_of(&s2));
}

/// Requests that arrive together when the renewal is due move the session
/// once: every one of them ends with the same new id.
pub async fn concurrent_requests_renew_once(factory: &dyn StoreFactory) {
    let h = Harness::new(factory, renewal).await;
    let s1 = h.login("user-a", None).await.cookie();
    h.clock.advance(Duration::minutes(10));

    let (a, b, c) = tokio::join!(
        h.get("/me", Some(&s1)),
        h.get("/me", Some(&s1)),
        h.get("/me", Some(&s1)),
    );
    let mut new_ids = HashSet::new();
    for response in [&a, &b, &c] {
        assert_eq!(response.status, StatusCode::OK);
        new_ids.insert(id_of(&response.cookie()));
    }
    assert_eq!(new_ids.len(), 1, "one renewal");
    assert!(!new_ids.contains(&id_of(&s1)));

    h.clock.advance(Duration::seconds(30));
    assert_eq!(
        h.get("/me", Some(&s1)).await.status,
        StatusCode::UNAUTHORIZED,
        "the old id ends with the grace window"
    );
    assert_eq!(h.get("/me", Some(&a.cookie())).await.status, StatusCode::OK);
}
