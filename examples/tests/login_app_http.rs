//! The login app's whole contract over real HTTP: the app is served
//! in-process on 127.0.0.1 and driven by reqwest with redirects off. The
//! test keeps the session cookie itself, so that every `Set-Cookie` and
//! every old cookie can be checked.

use examples::login_app::{LoginApp, SecretSource, Settings, StartError, StoreKind};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
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

/// The app served on an ephemeral port of 127.0.0.1.
struct Server {
    base: String,
    client: reqwest::Client,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), StartError>>,
}

impl Server {
    async fn start() -> Self {
        let settings = Settings {
            port: 0,
            secret: SecretSource::Environment(SECRET.to_vec()),
            store: StoreKind::Memory,
        };
        let app = LoginApp::from_settings(&settings).unwrap();
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

#[tokio::test]
async fn anonymous_home_links_to_login() {
    let server = Server::start().await;

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

#[tokio::test]
async fn login_page_fills_only_safe_next() {
    let server = Server::start().await;

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

#[tokio::test]
async fn guarded_pages_redirect_anonymous_visitors_to_login() {
    let server = Server::start().await;

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

#[tokio::test]
async fn alice_signs_in_and_out() {
    let server = Server::start().await;

    // A wrong password: back to the form, `next` kept, the error queued in
    // a new anonymous session.
    let failed = server.login("alice", "builder", "/profile", None).await;
    assert_eq!(failed.status, StatusCode::SEE_OTHER);
    assert_eq!(failed.location.as_deref(), Some("/login?next=%2Fprofile"));
    assert_eq!(failed.body, "");
    let anonymous = failed.only_cookie();
    anonymous.assert_session();

    let form = server
        .get("/login?next=%2Fprofile", Some(&anonymous.value))
        .await;
    assert_eq!(form.status, StatusCode::OK);
    form.assert_no_cookie();
    assert_eq!(
        form.flash(),
        [(
            "error".to_owned(),
            "Invalid username or password".to_owned()
        )]
    );
    assert!(
        form.body.contains(r#"name="next" value="&#x2f;profile">"#),
        "{}",
        form.body
    );

    // The flash was shown once.
    let home = server.get("/", Some(&anonymous.value)).await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.flash(), []);

    // The right password: a new session id, and on to `next`.
    let signed_in = server
        .login("alice", "wonderland", "/profile", Some(&anonymous.value))
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location.as_deref(), Some("/profile"));
    let alice = signed_in.only_cookie();
    alice.assert_session();
    assert_ne!(alice.value, anonymous.value);

    let profile = server.get("/profile", Some(&alice.value)).await;
    assert_eq!(profile.status, StatusCode::OK);
    profile.assert_html();
    profile.assert_no_cookie();
    assert_eq!(
        profile.flash(),
        [("notice".to_owned(), "Welcome back, alice!".to_owned())]
    );
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

    let profile = server.get("/profile", Some(&alice.value)).await;
    assert_eq!(profile.status, StatusCode::OK);
    assert_eq!(profile.flash(), []);

    let home = server.get("/", Some(&alice.value)).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains(&welcome("alice")), "{}", home.body);
    assert!(!home.body.contains(r#"<a href="/login">"#), "{}", home.body);

    let admin = server.get("/admin", Some(&alice.value)).await;
    assert_eq!(admin.status, StatusCode::OK);
    admin.assert_html();
    assert!(admin.body.contains("<h1>Admin</h1>"), "{}", admin.body);

    // The cookie from before the sign-in is anonymous now, and is removed.
    let stale = server.get("/profile", Some(&anonymous.value)).await;
    assert_eq!(stale.status, StatusCode::SEE_OTHER);
    assert_eq!(stale.location.as_deref(), Some("/login?next=%2Fprofile"));
    stale.only_cookie().assert_removal();

    // Sign out: the session is destroyed and the goodbye lives in a new one.
    let signed_out = server.post("/logout", &[], Some(&alice.value)).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_out.location.as_deref(), Some("/"));
    let after = signed_out.only_cookie();
    after.assert_session();
    assert_ne!(after.value, alice.value);

    let home = server.get("/", Some(&after.value)).await;
    assert_eq!(home.status, StatusCode::OK);
    home.assert_no_cookie();
    assert_eq!(
        home.flash(),
        [("notice".to_owned(), "Goodbye, alice!".to_owned())]
    );
    assert!(!home.body.contains(&welcome("alice")), "{}", home.body);
    assert!(
        home.body.contains(r#"<a href="/login">Sign in</a>"#),
        "{}",
        home.body
    );

    let home = server.get("/", Some(&after.value)).await;
    assert_eq!(home.flash(), []);

    // The signed-in cookie no longer opens anything.
    let old = server.get("/profile", Some(&alice.value)).await;
    assert_eq!(old.status, StatusCode::SEE_OTHER);
    assert_eq!(old.location.as_deref(), Some("/login?next=%2Fprofile"));
    old.only_cookie().assert_removal();

    let old = server.get("/", Some(&alice.value)).await;
    assert_eq!(old.status, StatusCode::OK);
    assert!(!old.body.contains(&welcome("alice")), "{}", old.body);
    assert_eq!(old.flash(), []);
    old.only_cookie().assert_removal();

    let old = server.get("/admin", Some(&alice.value)).await;
    assert_eq!(old.status, StatusCode::SEE_OTHER);
    assert_eq!(old.location.as_deref(), Some("/login?next=%2Fadmin"));

    server.stop().await;
}

#[tokio::test]
async fn bob_gets_a_forbidden_page_on_admin() {
    let server = Server::start().await;

    let signed_in = server.login("bob", "builder", "", None).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location.as_deref(), Some("/"));
    let bob = signed_in.only_cookie();
    bob.assert_session();

    let home = server.get("/", Some(&bob.value)).await;
    assert!(home.body.contains(&welcome("bob")), "{}", home.body);
    assert_eq!(
        home.flash(),
        [("notice".to_owned(), "Welcome back, bob!".to_owned())]
    );

    let admin = server.get("/admin", Some(&bob.value)).await;
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

    let profile = server.get("/profile", Some(&bob.value)).await;
    assert_eq!(profile.status, StatusCode::OK);
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

#[tokio::test]
async fn unsafe_next_is_never_followed() {
    let server = Server::start().await;

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

#[tokio::test]
async fn unknown_user_and_wrong_password_look_alike() {
    let server = Server::start().await;

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
        assert_eq!(
            form.flash(),
            [(
                "error".to_owned(),
                "Invalid username or password".to_owned()
            )]
        );
    }

    server.stop().await;
}

#[tokio::test]
async fn unknown_path_gets_an_escaped_404_page() {
    let server = Server::start().await;

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
