//! The reference app of the HTTP cases.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Form, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use session_axum::session_core::{Role, SessionData};
use session_axum::{CurrentSession, Flash, RequireAuth, RequireRole, SessionExpiry, SessionLayer};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestSession {
    pub user: Option<String>,
    pub roles: Vec<String>,
    pub cart: Vec<String>,
    pub locale: Option<String>,
    pub visits: u32,
    pub prefs: Option<Prefs>,
    pub notes: String,
}

/// Typed values that must survive a round trip unchanged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Channel {
    Email,
    Sms,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prefs {
    pub by_channel: BTreeMap<Channel, bool>,
    pub big: u64,
    pub raw: Vec<u8>,
    pub at: time::OffsetDateTime,
}

impl Prefs {
    pub fn sample() -> Self {
        Self {
            by_channel: BTreeMap::from([(Channel::Email, true), (Channel::Sms, false)]),
            big: (1u64 << 53) + 1,
            raw: vec![0, 255, 7],
            at: time::macros::datetime!(2030-05-06 7:08:09.123456789 UTC),
        }
    }
}

impl SessionData for TestSession {
    fn identity(&self) -> Option<String> {
        self.user.clone()
    }

    fn roles(&self) -> Vec<&str> {
        self.roles.iter().map(String::as_str).collect()
    }
}

pub struct Admin;

impl Role for Admin {
    const NAME: &'static str = "admin";
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    pass: String,
    remember: Option<String>,
}

#[derive(Deserialize)]
struct LoginOrder {
    order: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    item: String,
    delay_ms: Option<u64>,
}

#[derive(Deserialize)]
struct Message {
    m: String,
}

#[derive(Deserialize)]
struct Locale {
    l: String,
}

#[derive(Deserialize)]
struct LogoutOptions {
    keep_locale: Option<String>,
}

#[derive(Deserialize)]
struct Note {
    size: usize,
}

pub fn router(layer: SessionLayer<TestSession>) -> Router {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/account/settings/logout", post(logout))
        .route("/me", get(me))
        .route("/public", get(|| async { "public" }))
        .route("/cart/add", post(cart_add))
        .route("/cart", get(cart))
        .route("/flash", post(flash_set))
        .route("/inbox", get(inbox))
        .route("/admin", get(admin))
        .route("/slow", get(slow))
        .route("/locale", get(locale).post(set_locale))
        .route("/a/b/page", get(visit))
        .route("/visit", get(visit))
        .route("/rotate", post(rotate_only))
        .route("/prefs", get(prefs).post(set_prefs))
        .route("/notes", post(set_notes))
        .route("/other-cookie", post(other_cookie))
        .layer(layer)
        .layer(axum::middleware::from_fn(peer_from_test_header))
}

/// Stands in for the socket peer address: `oneshot` requests have no
/// socket, so the tests name the client IP in `x-test-peer`.
async fn peer_from_test_header(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = request
        .headers()
        .get("x-test-peer")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<std::net::IpAddr>().ok());
    if let Some(ip) = peer {
        let addr = std::net::SocketAddr::new(ip, 40_000);
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
    }
    next.run(request).await
}

async fn login_page(session: CurrentSession<TestSession>) -> &'static str {
    // Touches the session so that a later login has an id to rotate away from.
    session.update(|data| data.visits += 1);
    "login form"
}

async fn login(
    session: CurrentSession<TestSession>,
    Query(order): Query<LoginOrder>,
    Form(form): Form<LoginForm>,
) -> impl IntoResponse {
    let roles = match (form.user.as_str(), form.pass.as_str()) {
        ("user-a", "pw") => vec!["viewer".to_owned()],
        ("admin-b", "pw") => vec!["admin".to_owned()],
        _ => return StatusCode::UNAUTHORIZED.into_response(),
    };
    let sign_in = |data: &mut TestSession| {
        data.user = Some(form.user.clone());
        data.roles = roles.clone();
    };
    match order.order.as_deref() {
        Some("b") => {
            session.update(sign_in);
            session.regenerate();
        }
        Some("c") => {
            session.regenerate();
            session.update(|data| data.cart.clear());
            session.update(sign_in);
        }
        _ => {
            session.regenerate();
            session.update(sign_in);
        }
    }
    if form.remember.as_deref() == Some("1") {
        session.set_expiry(SessionExpiry::RememberFor(time::Duration::days(60)));
    }
    Redirect::to("/dashboard").into_response()
}

async fn logout(
    session: CurrentSession<TestSession>,
    Query(options): Query<LogoutOptions>,
) -> Redirect {
    let locale = session.data().locale;
    session.destroy();
    if options.keep_locale.as_deref() == Some("1") {
        // The opt-in allow-list: only the locale is copied into the new session.
        if let Some(locale) = locale {
            session.update(|data| data.locale = Some(locale));
        }
    }
    Redirect::to("/")
}

async fn me(RequireAuth(session): RequireAuth<TestSession>) -> String {
    session.identity().unwrap_or_default()
}

async fn cart_add(session: CurrentSession<TestSession>, Query(item): Query<Item>) -> StatusCode {
    let mut cart = session.data().cart;
    if let Some(delay) = item.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    cart.push(item.item);
    session.update(|data| data.cart = cart);
    StatusCode::NO_CONTENT
}

async fn cart(session: CurrentSession<TestSession>) -> String {
    format!("[{}]", session.data().cart.join(","))
}

async fn flash_set(flash: Flash, Query(message): Query<Message>) -> Redirect {
    flash.notice(message.m);
    Redirect::to("/inbox")
}

async fn inbox(flash: Flash) -> String {
    flash
        .messages()
        .iter()
        .map(|message| format!("{}: {}\n", message.key, message.message))
        .collect()
}

async fn admin(_: RequireRole<TestSession, Admin>) -> &'static str {
    "admin"
}

async fn slow(session: CurrentSession<TestSession>) -> &'static str {
    let visits = session.data().visits;
    tokio::time::sleep(Duration::from_millis(500)).await;
    session.update(|data| data.visits = visits + 1);
    "slow"
}

async fn locale(session: CurrentSession<TestSession>) -> String {
    session.data().locale.unwrap_or_else(|| "en".to_owned())
}

async fn set_locale(
    session: CurrentSession<TestSession>,
    Query(locale): Query<Locale>,
) -> StatusCode {
    session.update(|data| data.locale = Some(locale.l));
    StatusCode::NO_CONTENT
}

async fn visit(session: CurrentSession<TestSession>) -> String {
    let visits = session.update(|data| {
        data.visits += 1;
        data.visits
    });
    visits.to_string()
}

async fn rotate_only(session: CurrentSession<TestSession>) -> StatusCode {
    session.regenerate();
    StatusCode::NO_CONTENT
}

async fn prefs(session: CurrentSession<TestSession>) -> String {
    format!("{:?}", session.data().prefs)
}

async fn set_prefs(session: CurrentSession<TestSession>) -> String {
    session.update(|data| data.prefs = Some(Prefs::sample()));
    format!("{:?}", session.data().prefs)
}

async fn set_notes(session: CurrentSession<TestSession>, Query(note): Query<Note>) -> StatusCode {
    session.update(|data| data.notes = "n".repeat(note.size));
    StatusCode::NO_CONTENT
}

async fn other_cookie(session: CurrentSession<TestSession>) -> impl IntoResponse {
    session.update(|data| data.visits += 1);
    (
        axum::response::AppendHeaders([
            ("set-cookie", "theme=dark; Path=/"),
            ("set-cookie", "lang=fr; Path=/"),
        ]),
        "ok",
    )
}
