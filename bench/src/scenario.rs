//! The scenarios: which session layer and store wraps the benchmark routes.

use std::fmt;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use session_axum::{
    CookieStore, MemoryStore, RedisStore as OurRedisStore, SessionConfig, SessionLayer,
};
use tower::ServiceExt;
use tower_sessions::cookie::Key;
use tower_sessions::Expiry;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, KeysInterface, Pool};
use tower_sessions_redis_store::RedisStore;

use crate::apps::{self, UNTOUCHED_BODY};
use crate::BenchUser;

/// Server-side idle timeout of every session scenario, 30 minutes: the
/// default of `SessionConfig` and the `Expiry::OnInactivity` given to
/// tower-sessions.
pub const IDLE_TIMEOUT: time::Duration = time::Duration::minutes(30);

/// Secret of the `session-axum` scenarios. A fixed value is fine for a
/// benchmark: no session outlives the process, and none is trusted.
const BENCH_SECRET: &[u8; 32] = b"session-bench fixed secret 32 B.";

/// Signing key of the signed tower-sessions scenario (64 bytes, as its `Key` requires).
const TOWER_SIGNING_KEY: &[u8; 64] =
    b"session-bench fixed tower-sessions signing key, sixty-four bytes";

/// Cookie sent to plain axum, which has no session. It has the length of a
/// `session-axum` cookie so that every scenario parses the same header size.
pub const PLAIN_AXUM_COOKIE: &str =
    "id=plain-axum-sends-no-session-so-this-is-only-filler-of-equal-length";

/// Redis connections of each Redis scenario: the size of tower-sessions' fred
/// pool and `RedisStoreBuilder::connections` of ours, so both spread
/// concurrent requests over the same number of connections.
///
/// NOTE: our store's default is one connection. With 16 concurrent requests
/// on one connection its client batches more commands per write, which
/// lowers Redis CPU per request; BENCHMARKS.md gives both figures.
const REDIS_POOL_SIZE: usize = 4;

/// A session layer and store wrapped around the benchmark routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Plain axum, no session layer.
    Axum,
    /// `session-axum` with `session_core::MemoryStore`.
    OursMemory,
    /// `session-axum` with the encrypted cookie store (`CookieStore`): the
    /// whole record travels sealed in the cookie.
    OursCookie,
    /// `session-axum` with `session_core::RedisStore` on one Redis.
    OursRedis,
    /// tower-sessions 0.15 with its `MemoryStore`, plain (unsigned) id cookie, its default.
    TowerMemory,
    /// tower-sessions 0.15 with its `MemoryStore` and a signed id cookie, as
    /// `session-axum` always signs the id.
    TowerMemorySigned,
    /// tower-sessions 0.14 with tower-sessions-redis-store 0.16 (fred).
    TowerRedis,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 7] = [
        Scenario::Axum,
        Scenario::OursMemory,
        Scenario::OursCookie,
        Scenario::OursRedis,
        Scenario::TowerMemory,
        Scenario::TowerMemorySigned,
        Scenario::TowerRedis,
    ];

    /// Returns the short name used in bench ids, reports and `--scenarios`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Axum => "axum",
            Scenario::OursMemory => "ours-memory",
            Scenario::OursCookie => "ours-cookie",
            Scenario::OursRedis => "ours-redis",
            Scenario::TowerMemory => "tower-memory",
            Scenario::TowerMemorySigned => "tower-memory-signed",
            Scenario::TowerRedis => "tower-redis",
        }
    }

    /// Parses a name returned by [`Scenario::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
    }

    /// Returns true when the scenario needs the Redis at `REDIS_URL`.
    pub fn uses_redis(self) -> bool {
        matches!(self, Scenario::OursRedis | Scenario::TowerRedis)
    }

    /// Returns true for scenarios with a session layer.
    pub fn has_sessions(self) -> bool {
        self != Scenario::Axum
    }

    /// Returns the tower-sessions scenario that `self` is compared with:
    /// the one with the same kind of store, and its memory store for our
    /// cookie store, since tower-sessions has no cookie store. `None` for
    /// plain axum and for tower-sessions itself.
    pub fn tower_counterpart(self) -> Option<Scenario> {
        match self {
            Scenario::OursMemory | Scenario::OursCookie => Some(Scenario::TowerMemory),
            Scenario::OursRedis => Some(Scenario::TowerRedis),
            Scenario::Axum
            | Scenario::TowerMemory
            | Scenario::TowerMemorySigned
            | Scenario::TowerRedis => None,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A benchmark route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET /read`: loads the session and returns a field.
    Read,
    /// `POST /write`: changes one field.
    Write,
    /// `GET /untouched`: never touches the session.
    Untouched,
}

impl Route {
    /// Every route, in report order.
    pub const ALL: [Route; 3] = [Route::Read, Route::Write, Route::Untouched];

    /// Returns the short name used in bench ids and reports.
    pub fn name(self) -> &'static str {
        match self {
            Route::Read => "read",
            Route::Write => "write",
            Route::Untouched => "untouched",
        }
    }

    /// Parses a name returned by [`Route::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|route| route.name() == name)
    }

    /// Returns the HTTP method.
    pub fn method(self) -> Method {
        match self {
            Route::Write => Method::POST,
            Route::Read | Route::Untouched => Method::GET,
        }
    }

    /// Returns the request path.
    pub fn path(self) -> &'static str {
        match self {
            Route::Read => "/read",
            Route::Write => "/write",
            Route::Untouched => "/untouched",
        }
    }
}

/// Environment of the benchmarks: the Redis they use.
#[derive(Debug, Clone)]
pub struct BenchEnv {
    /// `REDIS_URL`, default `redis://127.0.0.1:6379`.
    pub redis_url: String,
}

impl BenchEnv {
    /// Reads `REDIS_URL` from the environment.
    pub fn from_env() -> Self {
        let redis_url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        Self { redis_url }
    }
}

/// A scenario's app, ready to serve.
pub struct BenchApp {
    /// The scenario it implements.
    pub scenario: Scenario,
    /// The routes with the scenario's session layer.
    pub router: Router,
    redis: Option<Pool>,
}

impl fmt::Debug for BenchApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BenchApp")
            .field("scenario", &self.scenario)
            .finish_non_exhaustive()
    }
}

impl BenchApp {
    /// Builds the app of `scenario`, connecting to Redis where it needs one.
    ///
    /// # Errors
    ///
    /// A message naming the Redis URL when the connection fails.
    pub async fn build(scenario: Scenario, env: &BenchEnv) -> Result<Self, String> {
        let mut redis = None;
        let router = match scenario {
            Scenario::Axum => apps::plain::router(),
            Scenario::OursMemory => {
                let store = MemoryStore::builder()
                    .capacity(1_000_000)
                    .anonymous_capacity(1_000)
                    .build();
                apps::ours::router(SessionLayer::new(store, ours_config()))
            }
            Scenario::OursCookie => {
                let config = ours_config();
                let store = CookieStore::new(config.clone());
                apps::ours::router(SessionLayer::with_cookie_store(store, config))
            }
            Scenario::OursRedis => {
                let store = OurRedisStore::from_url(env.redis_url.as_str())
                    .key_prefix(our_redis_prefix())
                    .connections(REDIS_POOL_SIZE)
                    .build()
                    .map_err(|error| format!("could not build the Redis store: {error}"))?;
                store
                    .ping()
                    .await
                    .map_err(|error| format!("Redis at {} failed PING: {error}", env.redis_url))?;
                redis = Some(connect_fred(&env.redis_url).await?);
                apps::ours::router(SessionLayer::new(store, ours_config()))
            }
            Scenario::TowerMemory => apps::tower::v015::routes().layer(
                tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default())
                    .with_secure(false)
                    .with_expiry(Expiry::OnInactivity(IDLE_TIMEOUT)),
            ),
            Scenario::TowerMemorySigned => apps::tower::v015::routes().layer(
                tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default())
                    .with_secure(false)
                    .with_expiry(Expiry::OnInactivity(IDLE_TIMEOUT))
                    .with_signed(Key::from(TOWER_SIGNING_KEY)),
            ),
            Scenario::TowerRedis => {
                let pool = connect_fred(&env.redis_url).await?;
                redis = Some(pool.clone());
                apps::tower::v014::routes().layer(
                    tower_sessions_014::SessionManagerLayer::new(RedisStore::new(pool))
                        .with_secure(false)
                        .with_expiry(tower_sessions_014::Expiry::OnInactivity(IDLE_TIMEOUT)),
                )
            }
        };
        Ok(Self {
            scenario,
            router,
            redis,
        })
    }

    /// Creates a session through `POST /login` and returns the `Cookie`
    /// header value to send with later requests.
    ///
    /// # Errors
    ///
    /// A message when the login fails or sets no cookie.
    pub async fn login(&self, user: Option<u64>) -> Result<String, String> {
        let uri = match user {
            Some(id) => format!("/login?user={id}"),
            None => "/login".to_owned(),
        };
        let request = Request::post(uri)
            .body(Body::empty())
            .map_err(|error| error.to_string())?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|error| format!("{}: POST /login failed: {error}", self.scenario))?;
        if response.status() != StatusCode::OK {
            return Err(format!(
                "{}: POST /login returned {}",
                self.scenario,
                response.status()
            ));
        }
        if !self.scenario.has_sessions() {
            return Ok(PLAIN_AXUM_COOKIE.to_owned());
        }
        let set_cookie = response
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| format!("{}: POST /login sent no Set-Cookie", self.scenario))?;
        Ok(cookie_pair(set_cookie).to_owned())
    }

    /// Sends `route` once with `cookie` and checks the status and body.
    ///
    /// # Errors
    ///
    /// A message naming the scenario, route, status and body when the
    /// response is not the expected one.
    pub async fn check(&self, route: Route, cookie: &str) -> Result<(), String> {
        let response = self
            .router
            .clone()
            .oneshot(request(route, cookie))
            .await
            .map_err(|error| format!("{}: {} failed: {error}", self.scenario, route.path()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| {
                format!(
                    "{}: reading the body of {} failed: {error}",
                    self.scenario,
                    route.path()
                )
            })?
            .to_bytes();
        let body = String::from_utf8_lossy(&body);
        let expected_ok = match route {
            Route::Read => body == BenchUser::sample().name,
            Route::Write => body.parse::<u64>().is_ok(),
            Route::Untouched => body == UNTOUCHED_BODY,
        };
        if status != StatusCode::OK || !expected_ok {
            return Err(format!(
                "{}: {} {} returned {status} with body {body:?}",
                self.scenario,
                route.method(),
                route.path()
            ));
        }
        Ok(())
    }

    /// Deletes from Redis the sessions this app created.
    ///
    /// For `session-axum`'s store that is every key under this process's
    /// prefix (see [`our_redis_prefix`]). tower-sessions-redis-store uses
    /// the bare session id as the key, so for it the benchmark deletes
    /// exactly the ids behind `cookies`. Every key also expires after
    /// [`IDLE_TIMEOUT`] if this step does not run.
    ///
    /// # Errors
    ///
    /// The Redis error of the failed `SCAN` or `DEL`.
    pub async fn delete_sessions(&self, cookies: &[String]) -> Result<(), String> {
        let Some(pool) = &self.redis else {
            return Ok(());
        };
        if self.scenario == Scenario::OursRedis {
            return delete_prefix(pool, &our_redis_prefix())
                .await
                .map_err(|error| {
                    format!("{}: deleting bench sessions failed: {error}", self.scenario)
                });
        }
        for chunk in cookies.chunks(500) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|cookie| cookie_value(cookie).to_owned())
                .filter(|key| !key.is_empty())
                .collect();
            if keys.is_empty() {
                continue;
            }
            let _: i64 = pool.del(keys).await.map_err(|error| {
                format!("{}: deleting bench sessions failed: {error}", self.scenario)
            })?;
        }
        Ok(())
    }
}

/// Builds the request of `route` carrying `cookie`.
pub fn request(route: Route, cookie: &str) -> Request<Body> {
    Request::builder()
        .method(route.method())
        .uri(route.path())
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .expect("method, path and cookie of a bench route form a valid request")
}

/// Returns `name=value`, the part of a `Set-Cookie` value that a browser sends back.
pub fn cookie_pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap_or("").trim()
}

/// Returns the value of a `name=value` cookie pair.
fn cookie_value(pair: &str) -> &str {
    pair.split_once('=').map(|(_, value)| value).unwrap_or("")
}

/// Returns the key prefix of `session-axum`'s Redis store in this process:
/// `session-bench:PID:`, so that concurrent benchmark processes never share
/// or delete each other's keys.
pub fn our_redis_prefix() -> String {
    format!("session-bench:{}:", std::process::id())
}

/// Most `SCAN` pages read while deleting a prefix, so that the loop is bounded.
const MAX_SCAN_PAGES: usize = 100_000;

/// Deletes every key that starts with `prefix`.
async fn delete_prefix(pool: &Pool, prefix: &str) -> Result<(), String> {
    let pattern = format!("{prefix}*");
    let mut cursor = "0".to_owned();
    for _ in 0..MAX_SCAN_PAGES {
        let (next, keys): (String, Vec<String>) = pool
            .next()
            .scan_page(cursor, pattern.as_str(), Some(1000), None)
            .await
            .map_err(|error| error.to_string())?;
        if !keys.is_empty() {
            let _: i64 = pool.del(keys).await.map_err(|error| error.to_string())?;
        }
        if next == "0" {
            return Ok(());
        }
        cursor = next;
    }
    Err(format!(
        "SCAN of {pattern} did not finish within {MAX_SCAN_PAGES} pages"
    ))
}

fn ours_config() -> SessionConfig {
    SessionConfig::development(BENCH_SECRET)
        .idle_timeout(Some(IDLE_TIMEOUT))
        .build()
        .expect("the bench session configuration is valid")
}

/// Connects a fred pool to `url`.
///
/// # Errors
///
/// A message naming the URL when it is invalid or the connection fails.
pub async fn connect_fred(url: &str) -> Result<Pool, String> {
    let config =
        Config::from_url(url).map_err(|error| format!("invalid REDIS_URL {url:?}: {error}"))?;
    let pool = Pool::new(config, None, None, None, REDIS_POOL_SIZE)
        .map_err(|error| format!("could not create a Redis pool for {url}: {error}"))?;
    // Bound the wait so that a missing Redis fails the scenario instead of hanging.
    tokio::time::timeout(std::time::Duration::from_secs(5), pool.init())
        .await
        .map_err(|_| format!("connecting to Redis at {url} timed out after 5 s"))?
        .map_err(|error| format!("could not connect to Redis at {url}: {error}"))?;
    Ok(pool)
}
