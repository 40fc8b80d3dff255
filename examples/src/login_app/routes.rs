//! The router and the page handlers.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::{context, Value};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use session_axum::{
    safe_next, AuthRejection, CurrentSession, GuardRejection, LoginRedirectLayer, RequireAuth,
    RequireRole, SessionLayer, SessionRejection,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::session::{Admin, UserSession};
use super::templates::Templates;
use super::users::{User, Users};

/// Characters kept as they are in the `next` query parameter: the
/// unreserved ones, as `LoginRedirectLayer` encodes it.
const NEXT_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// State shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    templates: Arc<Templates>,
    users: Arc<Users>,
}

/// Builds the app's router with the session layer applied.
///
/// `/profile` and `/admin` sit under a [`LoginRedirectLayer`], so anonymous
/// visitors are redirected to `/login?next=...` instead of getting a 401.
pub fn router(layer: SessionLayer<UserSession>, users: Users) -> Router {
    let state = AppState {
        templates: Arc::new(Templates::new()),
        users: Arc::new(users),
    };
    Router::new()
        .route("/profile", get(profile))
        .route("/admin", get(admin))
        .route_layer(LoginRedirectLayer::new("/login"))
        .route("/", get(index))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .fallback(not_found)
        .with_state(state)
        .layer(layer)
}

/// One flash message as the templates see it.
#[derive(Serialize)]
struct FlashView {
    key: String,
    message: String,
}

/// Context shared by every page: who is signed in and the flash messages.
#[derive(Serialize)]
struct Layout {
    username: Option<String>,
    flash: Vec<FlashView>,
}

impl Layout {
    fn of(session: &CurrentSession<UserSession>) -> Self {
        let username = session.is_authenticated().then(|| session.data().username);
        let flash = session
            .flash()
            .messages()
            .into_iter()
            .map(|message| FlashView {
                key: message.key,
                message: message.message,
            })
            .collect();
        Self { username, flash }
    }
}

async fn index(State(state): State<AppState>, session: CurrentSession<UserSession>) -> Response {
    let layout = Layout::of(&session);
    state.templates.page(
        StatusCode::OK,
        "index.html",
        context! { title => "Home", ..Value::from_serialize(&layout) },
    )
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(
    State(state): State<AppState>,
    session: CurrentSession<UserSession>,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = query
        .next
        .as_deref()
        .and_then(safe_next)
        .unwrap_or_default();
    let layout = Layout::of(&session);
    state.templates.page(
        StatusCode::OK,
        "login.html",
        context! { title => "Sign in", next, ..Value::from_serialize(&layout) },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
}

async fn login(
    State(state): State<AppState>,
    session: CurrentSession<UserSession>,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(&form.next).map(str::to_owned);

    // argon2 takes tens of milliseconds of CPU, so it runs off the async
    // worker threads.
    let users = state.users.clone();
    let LoginForm {
        username, password, ..
    } = form;
    let checked =
        tokio::task::spawn_blocking(move || users.authenticate(&username, &password).cloned())
            .await;
    let user = match checked {
        Ok(user) => user,
        Err(error) => {
            tracing::error!(%error, "password check failed to run");
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").into_response();
        }
    };

    let Some(user) = user else {
        tracing::info!("sign-in rejected: invalid username or password");
        session.flash().error("Invalid username or password");
        return Redirect::to(&login_location(next.as_deref())).into_response();
    };

    // A new id on every sign-in defeats session fixation.
    session.regenerate();
    session.set(signed_in(&user, OffsetDateTime::now_utc()));
    session
        .flash()
        .notice(format!("Welcome back, {}!", user.username));
    tracing::info!(user_id = user.id, "user signed in");
    Redirect::to(next.as_deref().unwrap_or("/")).into_response()
}

/// Returns the session data of `user`, signed in at `now`.
fn signed_in(user: &User, now: OffsetDateTime) -> UserSession {
    UserSession {
        user_id: Some(user.id),
        username: user.username.clone(),
        email: user.email.clone(),
        roles: user.roles.clone(),
        logged_in_at: Some(now),
    }
}

/// Returns the login page URL, carrying `next` when there is one.
fn login_location(next: Option<&str>) -> String {
    match next {
        Some(next) => format!("/login?next={}", utf8_percent_encode(next, NEXT_ENCODE)),
        None => "/login".to_owned(),
    }
}

async fn logout(session: CurrentSession<UserSession>) -> Redirect {
    let data = session.data();
    if session.exists() {
        session.destroy();
    }
    if let Some(user_id) = data.user_id {
        // Written after `destroy`, so it starts a new anonymous session
        // that carries only this message.
        session
            .flash()
            .notice(format!("Goodbye, {}!", data.username));
        tracing::info!(user_id, "user signed out");
    }
    Redirect::to("/")
}

async fn profile(
    State(state): State<AppState>,
    RequireAuth(session): RequireAuth<UserSession>,
) -> Response {
    let data = session.data();
    let logged_in_at = data
        .logged_in_at
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let layout = Layout::of(&session);
    state.templates.page(
        StatusCode::OK,
        "profile.html",
        context! {
            title => "Profile",
            email => data.email,
            roles => data.roles,
            logged_in_at,
            ..Value::from_serialize(&layout)
        },
    )
}

async fn admin(State(state): State<AppState>, AdminPage(session): AdminPage) -> Response {
    let layout = Layout::of(&session);
    state.templates.page(
        StatusCode::OK,
        "admin.html",
        context! { title => "Admin", ..Value::from_serialize(&layout) },
    )
}

/// `RequireRole<UserSession, Admin>` with a rendered 403 page in place of
/// the guard's plain-text `Forbidden`. Anonymous visitors still get the
/// guard's redirect to the login page, and store failures its 503.
struct AdminPage(CurrentSession<UserSession>);

impl FromRequestParts<AppState> for AdminPage {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match RequireRole::<UserSession, Admin>::from_request_parts(parts, state).await {
            Ok(guard) => Ok(Self(guard.into_inner())),
            Err(GuardRejection::Auth(AuthRejection::Forbidden { role })) => {
                let session = CurrentSession::<UserSession>::from_request_parts(parts, state)
                    .await
                    .map_err(IntoResponse::into_response)?;
                tracing::info!(user_id = ?session.data().user_id, role, "page requires a role the user does not hold");
                let layout = Layout::of(&session);
                Err(state.templates.page(
                    StatusCode::FORBIDDEN,
                    "forbidden.html",
                    context! { title => "Forbidden", role, ..Value::from_serialize(&layout) },
                ))
            }
            Err(other) => Err(other.into_response()),
        }
    }
}

async fn not_found(
    State(state): State<AppState>,
    uri: Uri,
    session: Result<CurrentSession<UserSession>, SessionRejection>,
) -> Response {
    // The 404 page still shows who is signed in; if the session cannot be
    // loaded, it is shown as for an anonymous visitor.
    let layout = match &session {
        Ok(session) => Layout::of(session),
        Err(_) => Layout {
            username: None,
            flash: Vec::new(),
        },
    };
    state.templates.page(
        StatusCode::NOT_FOUND,
        "not_found.html",
        context! { title => "Page not found", path => uri.path(), ..Value::from_serialize(&layout) },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_location_keeps_an_encoded_next() {
        assert_eq!(login_location(None), "/login");
        assert_eq!(login_location(Some("/profile")), "/login?next=%2Fprofile");
        assert_eq!(
            login_location(Some("/a?b=c&d=e f")),
            "/login?next=%2Fa%3Fb%3Dc%26d%3De%20f"
        );
    }
}
