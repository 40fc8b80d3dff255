//! The reference test app of the HTTP cases and a harness to drive it.
//!
//! Every store runs the same cases through the real `SessionLayer`: a test
//! file supplies a [`StoreFactory`] and expands `http_cases!` with it.

#![allow(dead_code, unreachable_pub)]

pub mod app;
pub mod cases;
pub mod faulty;
#[cfg(feature = "redis")]
pub mod two_nodes;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use session_axum::session_core::{IdGenerator, SessionConfigBuilder, SessionId, SessionStore};
use session_axum::{ManualClock, SessionConfig, SessionLayer};
use tower::ServiceExt;

pub use app::TestSession;

/// The secret every test app uses.
pub const SECRET: &[u8; 32] = b"test secret of exactly 32 bytes!";

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the cases need to know about the store beyond the trait.
pub trait StoreProbe: Send + Sync {
    /// Counts the sessions the store holds.
    fn count(&self) -> BoxFuture<'_, u64>;
}

/// Builds a fresh, empty store for one case.
pub trait StoreFactory: Send + Sync {
    fn make(
        &self,
        clock: ManualClock,
    ) -> BoxFuture<'_, (Arc<dyn SessionStore>, Arc<dyn StoreProbe>)>;
}

/// An id generator that replays chosen ids, then draws random ones.
#[derive(Debug, Default, Clone)]
pub struct ScriptedIds {
    queue: Arc<Mutex<VecDeque<SessionId>>>,
}

impl ScriptedIds {
    pub fn new(ids: impl IntoIterator<Item = SessionId>) -> Self {
        Self {
            queue: Arc::new(Mutex::new(ids.into_iter().collect())),
        }
    }
}

impl IdGenerator for ScriptedIds {
    fn generate(&self) -> SessionId {
        self.queue
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(SessionId::random)
    }
}

/// The id named `Sn` in the cases.
pub fn sid(n: u8) -> SessionId {
    SessionId::from_bytes([n; 32])
}

/// The roles each user holds at the source of truth, consulted on every
/// request by the layer's revalidation hook.
pub type RoleDb = Arc<Mutex<std::collections::HashMap<String, Vec<String>>>>;

/// Adds the revalidation hook that reads roles from `roles`. Users missing
/// from the table keep their session as it is.
fn with_revalidation(layer: SessionLayer<TestSession>, roles: RoleDb) -> SessionLayer<TestSession> {
    layer.revalidate_with(move |session: &TestSession| {
        let current = session
            .user
            .as_ref()
            .and_then(|user| roles.lock().unwrap().get(user).cloned());
        let mut updated = session.clone();
        async move {
            match current {
                Some(roles) if roles != updated.roles => {
                    updated.roles = roles;
                    session_axum::Revalidation::Update(updated)
                }
                _ => session_axum::Revalidation::Valid,
            }
        }
    })
}

/// Builds the configuration of the test apps: the testing preset with a
/// 30-minute idle timeout, a 1-minute refresh interval and `clock`,
/// adjusted by `tweak`.
pub fn test_config(
    clock: &ManualClock,
    tweak: impl FnOnce(SessionConfigBuilder) -> SessionConfigBuilder,
) -> SessionConfig {
    let builder = SessionConfig::testing(SECRET)
        .idle_timeout(Some(time::Duration::minutes(30)))
        .refresh_interval(time::Duration::minutes(1))
        .clock(clock.clone());
    tweak(builder).build().expect("valid test configuration")
}

/// One case's running app.
pub struct Harness {
    pub roles: RoleDb,
    pub app: Router,
    pub layer: SessionLayer<TestSession>,
    pub clock: ManualClock,
    pub store: Arc<dyn SessionStore>,
    pub probe: Arc<dyn StoreProbe>,
    pub config: SessionConfig,
}

impl Harness {
    /// Builds the reference app on a fresh store, with the testing preset
    /// adjusted by `tweak`.
    pub async fn new(
        factory: &dyn StoreFactory,
        tweak: impl FnOnce(SessionConfigBuilder) -> SessionConfigBuilder,
    ) -> Self {
        Self::with_ids(factory, ScriptedIds::default(), tweak).await
    }

    pub async fn with_ids(
        factory: &dyn StoreFactory,
        ids: ScriptedIds,
        tweak: impl FnOnce(SessionConfigBuilder) -> SessionConfigBuilder,
    ) -> Self {
        let clock = ManualClock::starting_now();
        let config = test_config(&clock, |b| tweak(b.id_generator(ids)));
        let (store, probe) = factory.make(clock.clone()).await;
        let roles = RoleDb::default();
        let layer = SessionLayer::<TestSession>::from_shared_store(store.clone(), config.clone());
        let layer = with_revalidation(layer, roles.clone());
        Self {
            roles,
            app: app::router(layer.clone()),
            layer,
            clock,
            store,
            probe,
            config,
        }
    }

    /// Builds the reference app on the encrypted cookie store, with a memory
    /// store as its revocation list when `revocations` is true.
    pub fn with_cookie_store(
        clock: ManualClock,
        revocations: bool,
        tweak: impl FnOnce(SessionConfigBuilder) -> SessionConfigBuilder,
        budget: Option<usize>,
    ) -> Self {
        let config = test_config(&clock, tweak);
        let revocation_store = session_axum::MemoryStore::builder()
            .clock(Arc::new(clock.clone()))
            .build();
        let mut cookie_store = session_axum::session_core::CookieStore::new(config.clone());
        if revocations {
            cookie_store = cookie_store.revocations(revocation_store.clone());
        }
        if let Some(budget) = budget {
            cookie_store = cookie_store.budget(budget);
        }
        struct RevocationProbe(session_axum::MemoryStore);
        impl StoreProbe for RevocationProbe {
            fn count(&self) -> BoxFuture<'_, u64> {
                Box::pin(async move { self.0.stats().live_sessions })
            }
        }
        let roles = RoleDb::default();
        let layer = SessionLayer::<TestSession>::with_cookie_store(cookie_store, config.clone());
        let layer = with_revalidation(layer, roles.clone());
        Self {
            roles,
            app: app::router(layer.clone()),
            layer,
            clock,
            probe: Arc::new(RevocationProbe(revocation_store.clone())),
            store: Arc::new(revocation_store),
            config,
        }
    }

    /// Builds the reference app on a store the test already holds.
    pub fn with_store(
        store: impl SessionStore,
        clock: ManualClock,
        tweak: impl FnOnce(SessionConfigBuilder) -> SessionConfigBuilder,
    ) -> Self {
        struct NoProbe;
        impl StoreProbe for NoProbe {
            fn count(&self) -> BoxFuture<'_, u64> {
                Box::pin(async {
                    unreachable!("tests built with_store count through their own handle")
                })
            }
        }
        let config = test_config(&clock, tweak);
        let store: Arc<dyn SessionStore> = Arc::new(store);
        let roles = RoleDb::default();
        let layer = SessionLayer::<TestSession>::from_shared_store(store.clone(), config.clone());
        let layer = with_revalidation(layer, roles.clone());
        Self {
            roles,
            app: app::router(layer.clone()),
            layer,
            clock,
            store,
            probe: Arc::new(NoProbe),
            config,
        }
    }

    /// Sends a request with an optional `Cookie` header.
    pub async fn send(&self, method: Method, uri: &str, cookie: Option<&str>) -> TestResponse {
        self.send_with(method, uri, cookie, HeaderMap::new(), "")
            .await
    }

    pub async fn get(&self, uri: &str, cookie: Option<&str>) -> TestResponse {
        self.send(Method::GET, uri, cookie).await
    }

    pub async fn post(&self, uri: &str, cookie: Option<&str>) -> TestResponse {
        self.send(Method::POST, uri, cookie).await
    }

    /// Posts the login form for `user` (password `pw`).
    pub async fn login(&self, user: &str, cookie: Option<&str>) -> TestResponse {
        self.post_form("/login", cookie, &format!("user={user}&pass=pw"))
            .await
    }

    pub async fn post_form(&self, uri: &str, cookie: Option<&str>, form: &str) -> TestResponse {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        self.send_with(Method::POST, uri, cookie, headers, form)
            .await
    }

    pub async fn send_with(
        &self,
        method: Method,
        uri: &str,
        cookie: Option<&str>,
        headers: HeaderMap,
        body: &str,
    ) -> TestResponse {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let request = request.body(Body::from(body.to_owned())).unwrap();
        TestResponse::read(self.app.clone().oneshot(request).await.unwrap()).await
    }
}

/// Sends `method uri` with an optional `Cookie` header through `app` and
/// reads the response, for tests that build their own router.
pub async fn send_to(
    app: &Router,
    method: Method,
    uri: &str,
    cookie: Option<&str>,
) -> TestResponse {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let request = request.body(Body::empty()).unwrap();
    TestResponse::read(app.clone().oneshot(request).await.unwrap()).await
}

/// A response with its body read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl TestResponse {
    pub async fn read(response: axum::response::Response) -> Self {
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Self {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    /// Every `Set-Cookie` header value.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }

    /// The `Set-Cookie` values for the session cookie `id`.
    pub fn session_cookies(&self) -> Vec<String> {
        self.set_cookies()
            .into_iter()
            .filter(|c| c.starts_with("id="))
            .collect()
    }

    /// The one session `Set-Cookie`, which must exist.
    pub fn session_set_cookie(&self) -> String {
        let cookies = self.session_cookies();
        assert_eq!(
            cookies.len(),
            1,
            "expected exactly one session Set-Cookie, got {cookies:?}"
        );
        cookies.into_iter().next().unwrap()
    }

    /// The `Cookie` header a browser would send back: `id=<value>`.
    pub fn cookie(&self) -> String {
        let set_cookie = self.session_set_cookie();
        set_cookie.split(';').next().unwrap().to_owned()
    }

    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap())
    }
}

/// Splits a `Set-Cookie` header value into its value and sorted attributes.
pub fn attributes(set_cookie: &str) -> Vec<String> {
    let mut parts: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|p| p.trim().to_owned())
        .collect();
    parts.sort();
    parts
}

/// The session id in a `Cookie: id=<id>.<tag>` value.
pub fn id_of(cookie: &str) -> SessionId {
    let value = cookie.trim_start_matches("id=");
    SessionId::parse(&value[..43]).expect("cookie carries a session id")
}
