//! Authentication and role guards, and the login redirect for browser pages.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use session_core::{Role, SessionData};
use tower_layer::Layer;
use tower_service::Service;

use crate::rejection::{AuthRejection, GuardRejection};
use crate::CurrentSession;

/// Characters left as they are in the `next` parameter: unreserved ones.
const NEXT_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Extracts the session of a signed-in user, or rejects the request.
///
/// Anonymous requests get 401, or on routes under a [`LoginRedirectLayer`] a
/// 303 to the login page with `next` set to the requested path.
///
/// ```
/// use session_axum::RequireAuth;
/// # #[derive(session_axum::Session, Default, Clone, serde::Serialize, serde::Deserialize)]
/// # struct UserSession { #[session(identity)] user_id: Option<i64> }
///
/// async fn profile(RequireAuth(session): RequireAuth<UserSession>) -> String {
///     format!("user {}", session.identity().unwrap_or_default())
/// }
/// ```
pub struct RequireAuth<T: SessionData>(pub CurrentSession<T>);

impl<T: SessionData> fmt::Debug for RequireAuth<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequireAuth").field(&self.0).finish()
    }
}

impl<T: SessionData> Deref for RequireAuth<T> {
    type Target = CurrentSession<T>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<S: Send + Sync, T: SessionData> FromRequestParts<S> for RequireAuth<T> {
    type Rejection = GuardRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = CurrentSession::<T>::from_request_parts(parts, state).await?;
        if !session.is_authenticated() {
            return Err(unauthenticated(parts).into());
        }
        Ok(Self(session))
    }
}

/// Extracts the session of a signed-in user holding role `R`, or rejects.
///
/// Anonymous requests are handled as by [`RequireAuth`]; a signed-in user
/// without the role gets 403, never a redirect.
///
/// ```
/// use session_axum::RequireRole;
/// # #[derive(session_axum::Session, Default, Clone, serde::Serialize, serde::Deserialize)]
/// # #[session(role(Admin = "admin"))]
/// # struct UserSession { #[session(identity)] user_id: Option<i64>, #[session(roles)] roles: Vec<String> }
///
/// async fn dashboard(_: RequireRole<UserSession, Admin>) -> &'static str {
///     "admins only"
/// }
/// ```
pub struct RequireRole<T: SessionData, R: Role> {
    session: CurrentSession<T>,
    _role: PhantomData<fn() -> R>,
}

impl<T: SessionData, R: Role> RequireRole<T, R> {
    /// Returns the session.
    pub fn into_inner(self) -> CurrentSession<T> {
        self.session
    }
}

impl<T: SessionData, R: Role> fmt::Debug for RequireRole<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireRole")
            .field("role", &R::NAME)
            .finish_non_exhaustive()
    }
}

impl<T: SessionData, R: Role> Deref for RequireRole<T, R> {
    type Target = CurrentSession<T>;

    fn deref(&self) -> &Self::Target {
        &self.session
    }
}

impl<S: Send + Sync, T: SessionData, R: Role> FromRequestParts<S> for RequireRole<T, R> {
    type Rejection = GuardRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = CurrentSession::<T>::from_request_parts(parts, state).await?;
        if !session.is_authenticated() {
            return Err(unauthenticated(parts).into());
        }
        if !session.has_role(R::NAME) {
            return Err(AuthRejection::Forbidden { role: R::NAME }.into());
        }
        Ok(Self {
            session,
            _role: PhantomData,
        })
    }
}

fn unauthenticated(parts: &Parts) -> AuthRejection {
    let redirect_to = parts.extensions.get::<LoginRedirect>().map(|redirect| {
        // Behind `Router::nest` the URI is stripped of its prefix; the
        // original URI is the one the browser asked for.
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map(|original| &original.0)
            .unwrap_or(&parts.uri);
        let target = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        redirect.location_for(target)
    });
    AuthRejection::Unauthenticated { redirect_to }
}

/// Marks routes as browser pages: guards redirect anonymous requests to the
/// login page (303 with `next` set to the requested path and query) instead
/// of answering 401.
///
/// ```
/// use axum::{routing::get, Router};
/// use session_axum::LoginRedirectLayer;
///
/// # async fn profile() {}
/// let pages: Router = Router::new()
///     .route("/profile", get(profile))
///     .route_layer(LoginRedirectLayer::new("/login"));
/// ```
#[derive(Debug, Clone)]
pub struct LoginRedirectLayer {
    redirect: LoginRedirect,
}

#[derive(Debug, Clone)]
struct LoginRedirect {
    login_path: Arc<str>,
}

impl LoginRedirect {
    fn location_for(&self, target: &str) -> String {
        let next = utf8_percent_encode(target, NEXT_ENCODE);
        let separator = if self.login_path.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{separator}next={next}", self.login_path)
    }
}

impl LoginRedirectLayer {
    /// Redirects anonymous requests to `login_path`, a same-origin path such
    /// as `/login`.
    ///
    /// # Panics
    ///
    /// When `login_path` is not a safe relative path (see [`safe_next`]).
    pub fn new(login_path: &str) -> Self {
        assert!(
            safe_next(login_path).is_some(),
            "login path {login_path:?} must be a same-origin path starting with a single `/`"
        );
        Self {
            redirect: LoginRedirect {
                login_path: Arc::from(login_path),
            },
        }
    }
}

impl<S> Layer<S> for LoginRedirectLayer {
    type Service = LoginRedirectService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoginRedirectService {
            inner,
            redirect: self.redirect.clone(),
        }
    }
}

/// The service produced by [`LoginRedirectLayer`].
#[derive(Debug, Clone)]
pub struct LoginRedirectService<S> {
    inner: S,
    redirect: LoginRedirect,
}

impl<S: Service<Request>> Service<Request> for LoginRedirectService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        request.extensions_mut().insert(self.redirect.clone());
        self.inner.call(request)
    }
}

/// Returns `next` when it is a safe place to send a user after login: a
/// same-origin relative path. Anything else returns `None`.
///
/// Accepted: `/profile`, `/search?q=a%20b`. Rejected: absolute URLs,
/// scheme-relative `//host`, `/\host` (browsers read a backslash as a
/// slash), paths with control characters or whitespace, and empty strings.
///
/// ```
/// use session_axum::safe_next;
///
/// assert_eq!(safe_next("/profile?tab=keys"), Some("/profile?tab=keys"));
/// assert_eq!(safe_next("https://evil.example/"), None);
/// assert_eq!(safe_next("//evil.example"), None);
/// ```
pub fn safe_next(next: &str) -> Option<&str> {
    let bytes = next.as_bytes();
    let starts_with_single_slash =
        bytes.first() == Some(&b'/') && !matches!(bytes.get(1), Some(b'/' | b'\\'));
    let clean = next
        .chars()
        .all(|c| !c.is_control() && !c.is_whitespace() && c != '\\');
    (starts_with_single_slash && clean && next.len() <= 2048).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_next_accepts_only_same_origin_paths() {
        for good in ["/", "/profile", "/a/b?c=d&e=%2F", "/admin#top"] {
            assert_eq!(safe_next(good), Some(good), "{good}");
        }
        for bad in [
            "",
            "profile",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/a\nb",
            "/a b",
            "/\t/evil.example",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(3000))), None);
    }

    #[test]
    fn login_location_encodes_the_target() {
        let redirect = LoginRedirect {
            login_path: Arc::from("/login"),
        };
        assert_eq!(redirect.location_for("/profile"), "/login?next=%2Fprofile");
        assert_eq!(
            redirect.location_for("/a?b=c&d"),
            "/login?next=%2Fa%3Fb%3Dc%26d"
        );
        let with_query = LoginRedirect {
            login_path: Arc::from("/login?lang=en"),
        };
        assert_eq!(with_query.location_for("/x"), "/login?lang=en&next=%2Fx");
    }
}
