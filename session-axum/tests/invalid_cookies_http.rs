//! Invalid or unknown session cookies counted per client: the warning and
//! event when a client goes over the limit, and the 429 when it is blocked.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use session_axum::session_core::SessionId;
use session_axum::{
    InvalidCookieLimit, ManualClock, MemoryStore, SessionConfig, SessionEvent, SessionEventKind,
    SessionEvents, SessionLayer,
};
use support::{TestResponse, TestSession};
use tower::ServiceExt;

const CLIENT_A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const CLIENT_B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));

/// Records the kind of every session event.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<SessionEventKind>>>);

impl Recorder {
    fn floods(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|kind| **kind == SessionEventKind::InvalidCookieFlood)
            .count()
    }
}

impl SessionEvents for Recorder {
    fn on_event(&self, event: &SessionEvent) {
        self.0.lock().unwrap().push(event.kind);
    }
}

struct App {
    router: Router,
    config: SessionConfig,
    clock: ManualClock,
    events: Recorder,
}

impl App {
    fn new(limit: Option<InvalidCookieLimit>) -> Self {
        let clock = ManualClock::starting_now();
        let events = Recorder::default();
        let config = support::test_config(&clock, |builder| builder.events(events.clone()));
        let store = MemoryStore::builder()
            .clock(Arc::new(clock.clone()))
            .build();
        let layer =
            SessionLayer::<TestSession>::new(store, config.clone()).invalid_cookie_limit(limit);
        Self {
            router: support::app::router(layer),
            config,
            clock,
            events,
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        cookie: Option<&str>,
        client: Option<IpAddr>,
    ) -> TestResponse {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let mut request = request.body(Body::empty()).unwrap();
        if let Some(ip) = client {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
        }
        TestResponse::read(self.router.clone().oneshot(request).await.unwrap()).await
    }

    async fn cart(&self, cookie: Option<&str>, client: Option<IpAddr>) -> TestResponse {
        self.send(Method::GET, "/cart", cookie, client).await
    }

    /// Creates a session holding `x` in its cart and returns its cookie.
    async fn session(&self) -> String {
        let added = self
            .send(Method::POST, "/cart/add?item=x", None, Some(CLIENT_B))
            .await;
        assert_eq!(added.status, StatusCode::NO_CONTENT);
        added.cookie()
    }

    /// Returns a cookie whose signature is wrong.
    fn forged(&self) -> String {
        let name = self.config.cookie().name();
        format!("{name}={}.{}", "A".repeat(43), "B".repeat(22))
    }

    /// Returns a correctly signed cookie for an id the store never held.
    fn unknown(&self) -> String {
        let name = self.config.cookie().name();
        let value = SessionId::random().to_cookie_value(self.config.keys(), name);
        format!("{name}={value}")
    }
}

#[tokio::test]
async fn flood_is_reported_once_per_window() {
    let app = App::new(Some(InvalidCookieLimit::new(3, Duration::from_secs(60))));
    for attempt in 1..=5 {
        let response = app.cart(Some(&app.forged()), Some(CLIENT_A)).await;
        assert_eq!(response.status, StatusCode::OK, "attempt {attempt}");
        assert_eq!(response.body, "[]", "attempt {attempt}");
    }
    assert_eq!(app.events.floods(), 1);

    app.clock.advance(time::Duration::seconds(60));
    for _ in 1..=4 {
        app.cart(Some(&app.forged()), Some(CLIENT_A)).await;
    }
    assert_eq!(app.events.floods(), 2, "a new window reports again");
}

#[tokio::test]
async fn blocked_client_gets_429_until_window_ends() {
    let app = App::new(Some(
        InvalidCookieLimit::new(2, Duration::from_secs(60)).block(true),
    ));
    let valid = app.session().await;

    for _ in 1..=3 {
        let response = app.cart(Some(&app.forged()), Some(CLIENT_A)).await;
        assert_eq!(response.status, StatusCode::OK);
    }

    app.clock.advance(time::Duration::seconds(20));
    let blocked = app.cart(Some(&valid), Some(CLIENT_A)).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(blocked.headers[header::RETRY_AFTER], "40");
    assert_eq!(blocked.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        blocked.body,
        "Too many invalid session cookies from this client, please retry later"
    );
    assert!(
        blocked.set_cookies().is_empty(),
        "no cookie is set or removed"
    );

    let other_client = app.cart(Some(&valid), Some(CLIENT_B)).await;
    assert_eq!(other_client.status, StatusCode::OK);
    assert_eq!(other_client.body, "[x]");

    let without_cookie = app.cart(None, Some(CLIENT_A)).await;
    assert_eq!(without_cookie.status, StatusCode::OK);
    assert_eq!(without_cookie.body, "[]");

    app.clock.advance(time::Duration::seconds(40));
    let after_window = app.cart(Some(&valid), Some(CLIENT_A)).await;
    assert_eq!(after_window.status, StatusCode::OK);
    assert_eq!(after_window.body, "[x]");
}

#[tokio::test]
async fn unknown_signed_ids_count_as_invalid() {
    let app = App::new(Some(
        InvalidCookieLimit::new(1, Duration::from_secs(60)).block(true),
    ));
    let first = app.cart(Some(&app.unknown()), Some(CLIENT_A)).await;
    assert_eq!(first.status, StatusCode::OK);
    // The request that goes over the limit is still served.
    let second = app.cart(Some(&app.unknown()), Some(CLIENT_A)).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(app.events.floods(), 1);

    let third = app.cart(Some(&app.unknown()), Some(CLIENT_A)).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers[header::RETRY_AFTER], "60");
}

#[tokio::test]
async fn clients_without_connect_info_are_not_counted() {
    let app = App::new(Some(
        InvalidCookieLimit::new(1, Duration::from_secs(60)).block(true),
    ));
    for attempt in 1..=5 {
        let response = app.cart(Some(&app.forged()), None).await;
        assert_eq!(response.status, StatusCode::OK, "attempt {attempt}");
    }
    assert_eq!(app.events.floods(), 0, "nothing is counted");
}

#[tokio::test]
async fn valid_cookies_are_not_counted() {
    let app = App::new(Some(
        InvalidCookieLimit::new(1, Duration::from_secs(60)).block(true),
    ));
    let valid = app.session().await;
    for _ in 1..=10 {
        let response = app.cart(Some(&valid), Some(CLIENT_A)).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body, "[x]");
    }
    assert_eq!(app.events.floods(), 0);
}

#[tokio::test]
async fn counting_can_be_turned_off() {
    let app = App::new(None);
    for _ in 1..=30 {
        let response = app.cart(Some(&app.forged()), Some(CLIENT_A)).await;
        assert_eq!(response.status, StatusCode::OK);
    }
    assert_eq!(app.events.floods(), 0);
}
