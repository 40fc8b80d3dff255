//! The login app's whole contract over real HTTP, run against every store
//! that `SESSION_STORE` selects: one module per store (`memory`, `cookie`,
//! `redis`) runs the same test functions. The app is served in-process on
//! 127.0.0.1 and driven by reqwest with redirects off. The test keeps the
//! session cookie itself, so that every `Set-Cookie` and every old cookie
//! can be checked.
//!
//! The Redis tests use `REDIS_URL` (default `redis://127.0.0.1:6379`) and a
//! key prefix of their own, and delete only the keys under that prefix.
//! Apps built by the tests read time from a `ManualClock` that never moves,
//! so no session is refreshed or expires while a test runs.

use std::time::Duration;

use deadpool_redis::redis as redis_client;
use examples::login_app::{LoginApp, RedisSettings, SecretSource, Settings, StartError, StoreKind};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use session_axum::{ManualClock, SessionConfig};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SECRET: &[u8] = b"login app http test secret, 40 bytes long";

/// The `Expires` format of cookies, such as `Thu, 01 Jan 1970 00:00:00 GMT`.
const COOKIE_DATE: &[FormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// A store the contract runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Memory,
    Cookie,
    Redis,
    Cluster,
}

impl Store {
    fn kind(self) -> StoreKind {
        match self {
            Store::Memory => StoreKind::Memory,
            Store::Cookie => StoreKind::Cookie,
            Store::Redis => StoreKind::Redis,
            Store::Cluster => StoreKind::Cluster,
        }
    }

    /// Checks a response that changed the session but kept its id, such as
    /// a page that showed (and so consumed) a flash message, and returns
    /// the cookie value to send next.
    ///
    /// The cookie store seals the changed session into a new cookie value.
    /// Server-side stores save it under the same id and send no cookie.
    fn follow_update(self, reply: &Reply, cookie: &str) -> String {
        match self {
            Store::Cookie => {
                let resealed = reply.only_cookie();
                resealed.assert_session();
                assert_ne!(
                    resealed.value, cookie,
                    "the cookie store re-seals every change"
                );
                resealed.value
            }
            Store::Memory | Store::Redis | Store::Cluster => {
                reply.assert_no_cookie();
                cookie.to_owned()
            }
        }
    }

    /// Returns true when sessions outlive the app instance that created
    /// them, so a new instance with the same secret still serves them.
    fn survives_restart(self) -> bool {
        match self {
            Store::Memory => false,
            Store::Cookie | Store::Redis | Store::Cluster => true,
        }
    }
}

/// Returns the Redis URL of the tests: `REDIS_URL` or the local default.
fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The settings of one test, and the Redis keys it must delete at the end.
///
/// Every app that a fixture starts shares its settings: the same secret,
/// and for Redis the same key prefix, so they serve the same sessions.
struct Fixture {
    store: Store,
    settings: Settings,
}

impl Fixture {
    fn new(store: Store) -> Self {
        let key_prefix = format!("login_app_test:{:016x}:", rand::random::<u64>());
        let settings = Settings {
            port: 0,
            secret: SecretSource::Environment(SECRET.to_vec()),
            store: store.kind(),
            redis: RedisSettings {
                url: redis_url(),
                key_prefix,
            },
        };
        Self { store, settings }
    }

    /// Starts an app whose session clock never moves.
    async fn start(&self) -> Server {
        let config = SessionConfig::development(SECRET)
            .clock(ManualClock::starting_now())
            .build()
            .unwrap();
        let app = LoginApp::with_config(&self.settings, config).await.unwrap();
        Server::serve(app).await
    }

    /// Starts an app as `cargo run --example login_app` builds it, on the
    /// system clock.
    async fn start_from_settings(&self) -> Server {
        let app = LoginApp::from_settings(&self.settings).await.unwrap();
        Server::serve(app).await
    }

    /// Returns the Redis keys under this fixture's prefix, sorted.
    async fn redis_keys(&self) -> Vec<String> {
        let pattern = format!("{}*", self.settings.redis.key_prefix);
        let mut connection = redis_connection().await;
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        // SCAN visits the whole keyspace in a bounded number of calls.
        for _ in 0..100_000 {
            let (next, batch): (u64, Vec<String>) = redis_client::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut connection)
                .await
                .unwrap();
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Returns the session keys under this fixture's prefix, without the
    /// identity index keys.
    async fn redis_session_keys(&self) -> Vec<String> {
        let index = format!("{}identity:", self.settings.redis.key_prefix);
        self.redis_keys()
            .await
            .into_iter()
            .filter(|key| !key.starts_with(&index))
            .collect()
    }
}

impl Drop for Fixture {
    /// Deletes the keys under this fixture's prefix, and only those. It runs
    /// when a test fails too. Errors are ignored, because the keys expire at
    /// their session's deadline anyway.
    fn drop(&mut self) {
        if !matches!(self.store, Store::Redis | Store::Cluster) {
            return;
        }
        let Ok(client) = redis_client::Client::open(self.settings.redis.url.as_str()) else {
            return;
        };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(5)) else {
            return;
        };
        let pattern = format!("{}*", self.settings.redis.key_prefix);
        let mut cursor = 0u64;
        for _ in 0..100_000 {
            let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis_client::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000)
                .query(&mut connection)
            else {
                return;
            };
            for key in keys {
                let _: Result<i64, _> = redis_client::cmd("DEL").arg(&key).query(&mut connection);
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
}

async fn redis_connection() -> redis_client::aio::MultiplexedConnection {
    redis_client::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The app served on an ephemeral port of 127.0.0.1.
struct Server {
    base: String,
    client: reqwest::Client,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), StartError>>,
}

impl Server {
    async fn serve(app: LoginApp) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        Self {
            base: format!("http://{address}"),
            client,
            stop,
            task,
        }
    }
    /// Stops the server gracefully and checks that it shut down cleanly.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, format!("id={cookie}"));
        }
        Reply::read(request.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], cookie: Option<&str>) -> Reply {
        let body = form
            .iter()
            .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, format!("id={cookie}"));
        }
        Reply::read(request.send().await.unwrap()).await
    }

    async fn login(
        &self,
        username: &str,
        password: &str,
        next: &str,
        cookie: Option<&str>,
    ) -> Reply {
        let form = [
            ("username", username),
            ("password", password),
            ("next", next),
        ];
        self.post("/login", &form, cookie).await
    }
}

/// Percent-encodes a form value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// A response, read whole.
struct Reply {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    content_type: Option<String>,
    cache_control: Option<String>,
    body: String,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Self {
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|value: &reqwest::header::HeaderValue| value.to_str().unwrap().to_owned())
        };
        let location = header(LOCATION);
        let content_type = header(CONTENT_TYPE);
        let cache_control = header(CACHE_CONTROL);
        let set_cookies = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect();
        Self {
            status: response.status(),
            location,
            set_cookies,
            content_type,
            cache_control,
            body: response.text().await.unwrap(),
        }
    }

    /// Returns the single `Set-Cookie` of the response, parsed.
    fn only_cookie(&self) -> SetCookie {
        assert_eq!(self.set_cookies.len(), 1, "{:?}", self.set_cookies);
        SetCookie::parse(&self.set_cookies[0])
    }

    fn assert_no_cookie(&self) {
        assert!(self.set_cookies.is_empty(), "{:?}", self.set_cookies);
    }

    fn assert_html(&self) {
        assert_eq!(
            self.content_type.as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(self.cache_control.as_deref(), Some("no-store"));
    }

    /// Returns the flash messages shown on the page, as `(level, text)`.
    fn flash(&self) -> Vec<(String, String)> {
        let prefix = r#"<p class="flash flash-"#;
        self.body
            .lines()
            .filter_map(|line| line.strip_prefix(prefix))
            .map(|rest| {
                let (level, rest) = rest.split_once('"').unwrap();
                let text = rest
                    .strip_prefix(r#" role="status">"#)
                    .unwrap()
                    .strip_suffix("</p>")
                    .unwrap();
                (level.to_owned(), text.to_owned())
            })
            .collect()
    }
}

/// A parsed `Set-Cookie` header.
#[derive(Debug)]
struct SetCookie {
    name: String,
    value: String,
    /// Attributes in the order sent, such as `HttpOnly` or `Path=/`.
    attributes: Vec<String>,
}

impl SetCookie {
    fn parse(header: &str) -> Self {
        let mut parts = header.split(';').map(str::trim);
        let (name, value) = parts.next().unwrap().split_once('=').unwrap();
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
            attributes: parts.map(str::to_owned).collect(),
        }
    }

    fn sorted_attributes(&self) -> Vec<&str> {
        let mut attributes: Vec<&str> = self.attributes.iter().map(String::as_str).collect();
        attributes.sort_unstable();
        attributes
    }

    /// Checks a session cookie of the development preset: a browser-session
    /// cookie with no `Max-Age`, `Expires`, `Secure` or `Domain`.
    fn assert_session(&self) {
        assert_eq!(self.name, "id");
        assert!(!self.value.is_empty());
        assert_eq!(
            self.sorted_attributes(),
            ["HttpOnly", "Path=/", "SameSite=Lax"],
            "{self:?}"
        );
    }

    /// Checks a removal cookie: empty value, the same scope attributes, and
    /// `Max-Age=0` with an `Expires` in the past.
    fn assert_removal(&self) {
        assert_eq!(self.name, "id");
        assert_eq!(self.value, "");
        let expires = self
            .attributes
            .iter()
            .find_map(|attribute| attribute.strip_prefix("Expires="))
            .unwrap_or_else(|| panic!("no Expires in {self:?}"));
        let expires = PrimitiveDateTime::parse(expires, COOKIE_DATE)
            .unwrap()
            .assume_utc();
        assert!(expires < OffsetDateTime::now_utc(), "{expires}");
        let mut others: Vec<&str> = self
            .sorted_attributes()
            .into_iter()
            .filter(|attribute| !attribute.starts_with("Expires="))
            .collect();
        others.sort_unstable();
        assert_eq!(
            others,
            ["HttpOnly", "Max-Age=0", "Path=/", "SameSite=Lax"],
            "{self:?}"
        );
    }
}

fn welcome(username: &str) -> String {
    format!("Welcome, {username}!")
}

fn notice(text: &str) -> Vec<(String, String)> {
    vec![("notice".to_owned(), text.to_owned())]
}

fn invalid_credentials() -> Vec<(String, String)> {
    vec![(
        "error".to_owned(),
        "Invalid username or password".to_owned(),
    )]
}

/// Runs every contract test against one store, in a module named after it.
macro_rules! store_contract {
    ($module:ident, $store:expr) => {
        mod $module {
            use super::Store;

            const STORE: Store = $store;

            #[tokio::test]
            async fn anonymous_home_links_to_login() {
                super::anonymous_home_links_to_login(STORE).await;
            }

            #[tokio::test]
            async fn login_page_fills_only_safe_next() {
                super::login_page_fills_only_safe_next(STORE).await;
            }

            #[tokio::test]
            async fn guarded_pages_redirect_anonymous_visitors_to_login() {
                super::guarded_pages_redirect_anonymous_visitors_to_login(STORE).await;
            }

            #[tokio::test]
            async fn alice_signs_in_and_out() {
                super::alice_signs_in_and_out(STORE).await;
            }

            #[tokio::test]
            async fn bob_gets_a_forbidden_page_on_admin() {
                super::bob_gets_a_forbidden_page_on_admin(STORE).await;
            }

            #[tokio::test]
            async fn unsafe_next_is_never_followed() {
                super::unsafe_next_is_never_followed(STORE).await;
            }

            #[tokio::test]
            async fn unknown_user_and_wrong_password_look_alike() {
                super::unknown_user_and_wrong_password_look_alike(STORE).await;
            }

            #[tokio::test]
            async fn unknown_path_gets_an_escaped_404_page() {
                super::unknown_path_gets_an_escaped_404_page(STORE).await;
            }

            #[tokio::test]
            async fn restart_keeps_sessions_of_persistent_stores() {
                super::restart_keeps_sessions_of_persistent_stores(STORE).await;
            }
        }
    };
}

store_contract!(memory, Store::Memory);
store_contract!(cookie, Store::Cookie);
store_contract!(redis, Store::Redis);
store_contract!(cluster, Store::Cluster);

async fn anonymous_home_links_to_login(store: Store) {
    let fixture = Fixture::new(store);
    let server = fixture.start().await;

    let home = server.get("/", None).await;
    assert_eq!(home.status, StatusCode::OK);
    home.assert_html();
    home.assert_no_cookie();
    assert!(
        home.body.contains(r#"<a href="/login">Sign in</a>"#),
        "{}",
        home.body
    );
    assert!(!home.body.contains("Welcome,"), "{}", home.body);
    assert!(!home.body.contains("Sign out"), "{}", home.body);
    assert_eq!(home.flash(), []);

    server.stop().await;
}

async fn login_page_fills_only_safe_next(store: Store) {
    let fixture = Fixture::new(store);
    let server = fixture.start().await;

    let page = server.get("/login", None).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_html();
    page.assert_no_cookie();
    assert!(
        page.body
            .contains(r#"<form method="post" action="/login">"#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"<input name="username""#),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"<input name="password" type="password""#),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"<input type="hidden" name="next" value="">"#),
        "{}",
        page.body
    );

    // minijinja escapes `/` as `&#x2f;`; browsers decode it back.
    let page = server
        .get("/login?next=%2Fprofile%3Ftab%3Dkeys", None)
        .await;
    assert!(
        page.body
            .contains(r#"name="next" value="&#x2f;profile?tab=keys">"#),
        "{}",
        page.body
    );

    for unsafe_next in [
        "%2F%2Fevil.example",
        "https%3A%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "profile",
    ] {
        let page = server
            .get(&format!("/login?next={unsafe_next}"), None)
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body
                .contains(r#"<input type="hidden" name="next" value="">"#),
            "{unsafe_next}: {}",
            page.body
        );
    }

    // A safe path can still hold markup; it is escaped in the attribute.
    let page = server
        .get(
            "/login?next=%2F%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            None,
        )
        .await;
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(
        page.body
            .contains(r#"value="&#x2f;&quot;&gt;&lt;script&gt;alert(1)&lt;&#x2f;script&gt;">"#),
        "{}",
        page.body
    );

    server.stop().await;
}

async fn guarded_pages_redirect_anonymous_visitors_to_login(store: Store) {
    let fixture = Fixture::new(store);
    let server = fixture.start().await;

    let profile = server.get("/profile", None).await;
    assert_eq!(profile.status, StatusCode::SEE_OTHER);
    assert_eq!(profile.location.as_deref(), Some("/login?next=%2Fprofile"));
    profile.assert_no_cookie();

    let admin = server.get("/admin", None).await;
    assert_eq!(admin.status, StatusCode::SEE_OTHER);
    assert_eq!(admin.location.as_deref(), Some("/login?next=%2Fadmin"));
    admin.assert_no_cookie();

    server.stop().await;
}

/// Checks that `cookie` no longer opens a session: the guarded page
/// redirects to the login form and the cookie is removed.
async fn assert_anonymous(server: &Server, cookie: &str) {
    let stale = server.get("/profile", Some(cookie)).await;
    assert_eq!(stale.status, StatusCode::SEE_OTHER);
    assert_eq!(stale.location.as_deref(), Some("/login?next=%2Fprofile"));
    stale.only_cookie().assert_removal();
}

async fn alice_signs_in_and_out(store: Store) {
    let fixture = Fixture::new(store);
    let server = fixture.start().await;

    // A wrong password: back to the form, `next` kept, the error queued in
    // a new anonymous session.
    let failed = server.login("alice", "builder", "/profile", None).await;
    assert_eq!(failed.status, StatusCode::SEE_OTHER);
    assert_eq!(failed.location.as_deref(), Some("/login?next=%2Fprofile"));
    assert_eq!(failed.body, "");
    let first_anonymous = failed.only_cookie();
    first_anonymous.assert_session();

    let form = server
        .get("/login?next=%2Fprofile", Some(&first_anonymous.value))
        .await;
    assert_eq!(form.status, StatusCode::OK);
    assert_eq!(form.flash(), invalid_credentials());
    assert!(
        form.body.contains(r#"name="next" value="&#x2f;profile">"#),
        "{}",
        form.body
    );
    let anonymous = store.follow_update(&form, &first_anonymous.value);

    // The flash was shown once.
    let home = server.get("/", Some(&anonymous)).await;
    assert_eq!(home.status, StatusCode::OK);
    home.assert_no_cookie();
    assert_eq!(home.flash(), []);

    // The right password: a new session id, and on to `next`.
    let signed_in = server
        .login("alice", "wonderland", "/profile", Some(&anonymous))
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location.as_deref(), Some("/profile"));
    let first_alice = signed_in.only_cookie();
    first_alice.assert_session();
    assert_ne!(first_alice.value, anonymous);
    assert_ne!(first_alice.value, first_anonymous.value);

    let profile = server.get("/profile", Some(&first_alice.value)).await;
    assert_eq!(profile.status, StatusCode::OK);
    profile.assert_html();
    assert_eq!(profile.flash(), notice("Welcome back, alice!"));
    assert!(
        profile.body.contains("<dt>Username</dt><dd>alice</dd>"),
        "{}",
        profile.body
    );
    assert!(
        profile
            .body
            .contains("<dt>Email</dt><dd>alice@example.test</dd>"),
        "{}",
        profile.body
    );
    assert!(
        profile.body.contains("<dt>Roles</dt><dd>admin</dd>"),
        "{}",
        profile.body
    );
    assert!(
        profile.body.contains("Signed in as alice"),
        "{}",
        profile.body
    );
    let alice = store.follow_update(&profile, &first_alice.value);

    let profile = server.get("/profile", Some(&alice)).await;
    assert_eq!(profile.status, StatusCode::OK);
    profile.assert_no_cookie();
    assert_eq!(profile.flash(), []);

    let home = server.get("/", Some(&alice)).await;
    assert_eq!(home.status, StatusCode::OK);
    home.assert_no_cookie();
    assert!(home.body.contains(&welcome("alice")), "{}", home.body);
    assert!(!home.body.contains(r#"<a href="/login">"#), "{}", home.body);

    let admin = server.get("/admin", Some(&alice)).await;
    assert_eq!(admin.status, StatusCode::OK);
    admin.assert_html();
    admin.assert_no_cookie();
    assert!(admin.body.contains("<h1>Admin</h1>"), "{}", admin.body);

    // Every cookie from before the sign-in is anonymous now, and is removed.
    assert_anonymous(&server, &first_anonymous.value).await;
    assert_anonymous(&server, &anonymous).await;

    // Sign out: the session is destroyed and the goodbye lives in a new one.
    let signed_out = server.post("/logout", &[], Some(&alice)).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_out.location.as_deref(), Some("/"));
    let first_after = signed_out.only_cookie();
    first_after.assert_session();
    assert_ne!(first_after.value, alice);

    let home = server.get("/", Some(&first_after.value)).await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.flash(), notice("Goodbye, alice!"));
    assert!(!home.body.contains(&welcome("alice")), "{}", home.body);
    assert!(
        home.body.contains(r#"<a href="/login">Sign in</a>"#),
        "{}",
        home.body
    );
    let after = store.follow_update(&home, &first_after.value);

    let home = server.get("/", Some(&after)).await;
    home.assert_no_cookie();
    assert_eq!(home.flash(), []);

    // No signed-in cookie opens anything any more.
    for old in [&first_alice.value, &alice] {
        assert_anonymous(&server, old).await;

        let home = server.get("/", Some(old)).await;
        assert_eq!(home.status, StatusCode::OK);
        assert!(!home.body.contains(&welcome("alice")), "{}", home.body);
        assert_eq!(home.flash(), []);
        home.only_cookie().assert_removal();

        let admin = server.get("/admin", Some(old)).await;
        assert_eq!(admin.status, StatusCode::SEE_OTHER);
        assert_eq!(admin.location.as_deref(), Some("/login?next=%2Fadmin"));
    }

    server.stop().await;
}

async fn bob_gets_a_forbidden_page_on_admin(store: Store) {
    let fixture = Fixture::new(store);
    let server = fixture.start().await;

    let signed_in = server.login("bob", "builder", "", None).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location.as_deref(), Some("/"));
    let first_bob = signed_in.only_cookie();
    first_bob.assert_session();

    let home = server.get("/", Some(&first_bob.value)).await;
    assert!(home.body.contains(&welcome("bob")), "{}", home.body);
    assert_eq!(home.flash(), notice("Welcome back, bob!"));
    let bob = store.follow_update(&home, &first_bob.value);

    let admin = server.get("/admin", Some(&bob)).await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN);
    admin.assert_html();
    admin.assert_no_cookie();
    assert!(admin.body.contains("<h1>Forbidden</h1>"), "{}", admin.body);
    assert!(
        admin
            .body
            .contains("This page requires the admin role, which your account does not have."),
        "{}",
        admin.body
    );
    assert!(admin.body.contains("Signed in as bob"), "{}", admin.body);

    let profile = server.get("/profile", Some(&bob)).await;
    assert_eq!(profile.status, StatusCode::OK);
    profile.assert_no_cookie();
    assert!(
        profile
            .body
            .contains("<dt>Email</dt><dd>bob@example.test</dd>"),
        "{}",
        profile.body
    );
    assert!(
        profile.body.contains("<dt>Roles</dt><dd>viewer</dd>"),
        "{}",
        profile.body
    );

    server.stop().await;
}

async fn unsafe_next_is_never_followed(store: Store) {
    let fixture = Fixture::new(store);
    let server = fixture.start().await;

    for unsafe_next in [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "evil",
    ] {
        let signed_in = server.login("alice", "wonderland", unsafe_next, None).await;
        assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{unsafe_next}");
        assert_eq!(signed_in.location.as_deref(), Some("/"), "{unsafe_next}");
        signed_in.only_cookie().assert_session();

        let failed = server.login("alice", "nope", unsafe_next, None).await;
        assert_eq!(failed.status, StatusCode::SEE_OTHER, "{unsafe_next}");
        assert_eq!(failed.location.as_deref(), Some("/login"), "{unsafe_next}");
    }

    let signed_in = server
        .login("alice", "wonderland", "/admin?tab=users", None)
        .await;
    assert_eq!(signed_in.location.as_deref(), Some("/admin?tab=users"));
    let failed = server
        .login("alice", "nope", "/admin?tab=users", None)
        .await;
    assert_eq!(
        failed.location.as_deref(),
        Some("/login?next=%2Fadmin%3Ftab%3Dusers")
    );

    server.stop().await;
}

async fn unknown_user_and_wrong_password_look_alike(store: Store) {
    let fixture = Fixture::new(store);
    let server = fixture.start().await;

    let unknown = server
        .login("mallory", "wonderland", "/profile", None)
        .await;
    let wrong = server.login("alice", "wonderland!", "/profile", None).await;
    for reply in [&unknown, &wrong] {
        assert_eq!(reply.status, StatusCode::SEE_OTHER);
        assert_eq!(reply.location.as_deref(), Some("/login?next=%2Fprofile"));
        assert_eq!(reply.body, "");
        let cookie = reply.only_cookie();
        cookie.assert_session();

        let form = server.get("/login", Some(&cookie.value)).await;
        assert_eq!(form.flash(), invalid_credentials());
        store.follow_update(&form, &cookie.value);
    }

    server.stop().await;
}

async fn unknown_path_gets_an_escaped_404_page(store: Store) {
    let fixture = Fixture::new(store);
    let server = fixture.start().await;

    let missing = server.get("/no/such/page", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    missing.assert_html();
    missing.assert_no_cookie();
    assert!(
        missing.body.contains("<h1>Page not found</h1>"),
        "{}",
        missing.body
    );
    assert!(
        missing.body.contains("&#x2f;no&#x2f;such&#x2f;page"),
        "{}",
        missing.body
    );

    // `'` reaches the server unencoded and is escaped on the page.
    let quoted = server.get("/it's", None).await;
    assert_eq!(quoted.status, StatusCode::NOT_FOUND);
    assert!(quoted.body.contains("&#x2f;it&#x27;s"), "{}", quoted.body);
    assert!(!quoted.body.contains("it's"), "{}", quoted.body);

    server.stop().await;
}

/// Checks that a new app instance with the same settings (a restart) still
/// serves the sessions of the cookie and Redis stores, and has lost those of
/// the memory store.
async fn restart_keeps_sessions_of_persistent_stores(store: Store) {
    let fixture = Fixture::new(store);
    let first = fixture.start().await;
    let signed_in = first.login("bob", "builder", "/profile", None).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let bob = signed_in.only_cookie().value;
    first.stop().await;

    let second = fixture.start().await;
    let profile = second.get("/profile", Some(&bob)).await;
    if store.survives_restart() {
        assert_eq!(profile.status, StatusCode::OK);
        assert!(
            profile.body.contains("<dt>Username</dt><dd>bob</dd>"),
            "{}",
            profile.body
        );
        assert_eq!(profile.flash(), notice("Welcome back, bob!"));
        store.follow_update(&profile, &bob);
    } else {
        assert_eq!(profile.status, StatusCode::SEE_OTHER);
        assert_eq!(profile.location.as_deref(), Some("/login?next=%2Fprofile"));
        profile.only_cookie().assert_removal();
    }

    second.stop().await;
}

/// Redis keeps each session under the prefix, sealed so that no session
/// data is readable in the database, and deletes it at logout.
#[tokio::test]
async fn redis_sessions_are_sealed_under_prefix() {
    let fixture = Fixture::new(Store::Redis);
    let prefix = fixture.settings.redis.key_prefix.clone();
    let server = fixture.start().await;
    assert_eq!(fixture.redis_keys().await, Vec::<String>::new());

    let signed_in = server.login("alice", "wonderland", "", None).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let alice = signed_in.only_cookie().value;

    let keys = fixture.redis_keys().await;
    assert_eq!(
        keys.len(),
        2,
        "one session and one identity index: {keys:?}"
    );
    let sessions = fixture.redis_session_keys().await;
    assert_eq!(sessions.len(), 1, "{keys:?}");
    let session_key = &sessions[0];
    assert!(
        session_key.starts_with(&format!("{prefix}{{")),
        "{session_key}"
    );
    assert!(
        keys.iter()
            .any(|key| key.starts_with(&format!("{prefix}identity:{{"))),
        "{keys:?}"
    );

    let mut connection = redis_connection().await;
    let stored: Vec<u8> = redis_client::cmd("GET")
        .arg(session_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!stored.is_empty());
    for plain in [&b"alice"[..], b"example.test", b"admin", b"Welcome"] {
        assert!(
            !stored.windows(plain.len()).any(|window| window == plain),
            "{:?} is readable in the stored session",
            String::from_utf8_lossy(plain)
        );
    }

    let signed_out = server.post("/logout", &[], Some(&alice)).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    let sessions_after = fixture.redis_session_keys().await;
    assert!(
        !sessions_after.contains(session_key),
        "the signed-in session is still stored: {sessions_after:?}"
    );
    // The goodbye message lives in a new anonymous session.
    assert_eq!(sessions_after.len(), 1, "{sessions_after:?}");

    server.stop().await;
}

/// Two instances on one Redis, with the same secret and key prefix, behave
/// as one app: a session made on one is served, and destroyed, by the other.
#[tokio::test]
async fn two_redis_instances_share_sessions() {
    two_instances_share_sessions(Store::Redis).await;
}

/// The same with the clustered store, whose local caches must not serve a
/// session the other instance changed or destroyed.
#[tokio::test]
async fn two_cluster_instances_share_sessions() {
    two_instances_share_sessions(Store::Cluster).await;
}

async fn two_instances_share_sessions(store: Store) {
    let fixture = Fixture::new(store);
    let a = fixture.start_from_settings().await;
    let b = fixture.start_from_settings().await;

    let signed_in = a.login("alice", "wonderland", "/profile", None).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location.as_deref(), Some("/profile"));
    let alice = signed_in.only_cookie();
    alice.assert_session();

    let profile = b.get("/profile", Some(&alice.value)).await;
    assert_eq!(profile.status, StatusCode::OK);
    profile.assert_no_cookie();
    assert_eq!(profile.flash(), notice("Welcome back, alice!"));
    assert!(
        profile.body.contains("<dt>Username</dt><dd>alice</dd>"),
        "{}",
        profile.body
    );

    // B consumed the flash message; A sees that.
    let home = a.get("/", Some(&alice.value)).await;
    assert_eq!(home.status, StatusCode::OK);
    home.assert_no_cookie();
    assert!(home.body.contains(&welcome("alice")), "{}", home.body);
    assert_eq!(home.flash(), []);

    let signed_out = b.post("/logout", &[], Some(&alice.value)).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_out.location.as_deref(), Some("/"));
    let after = signed_out.only_cookie();
    after.assert_session();

    assert_anonymous(&a, &alice.value).await;
    let home = a.get("/", Some(&after.value)).await;
    assert_eq!(home.status, StatusCode::OK);
    home.assert_no_cookie();
    assert_eq!(home.flash(), notice("Goodbye, alice!"));

    a.stop().await;
    b.stop().await;
}
