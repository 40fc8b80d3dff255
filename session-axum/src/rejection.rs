//! Typed rejections: each has a status, a message and `IntoResponse`.

use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use session_core::StoreError;

/// The reason the session could not be loaded or saved.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The extractor ran on a route without a `SessionLayer` for this
    /// session type. 500: a programming error.
    MissingLayer {
        /// The session type the extractor asked for.
        type_name: &'static str,
    },
    /// The store failed or timed out. 503, and nothing is written.
    StoreUnavailable(StoreError),
    /// The session would exceed its size budget. 500; the stored session
    /// and the browser's cookie are left as they were.
    TooLarge {
        /// The size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// Another request changed the session first and the change could not
    /// be merged. 409; the client may retry.
    Conflict,
    /// The session is busy with other requests for longer than the lock
    /// timeout. 503.
    Busy,
    /// The session data could not be encoded. 500.
    Encoding(String),
    /// This client sent too many invalid or unknown session cookies and is
    /// blocked until its window ends. 429, with `Retry-After`.
    TooManyInvalidCookies {
        /// How long the client stays blocked.
        retry_after: std::time::Duration,
    },
}

impl SessionRejection {
    /// Returns the HTTP status of the rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            SessionRejection::MissingLayer { .. }
            | SessionRejection::TooLarge { .. }
            | SessionRejection::Encoding(_) => StatusCode::INTERNAL_SERVER_ERROR,
            SessionRejection::StoreUnavailable(_) | SessionRejection::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SessionRejection::Conflict => StatusCode::CONFLICT,
            SessionRejection::TooManyInvalidCookies { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Returns the response body: a short message for the client. Server
    /// details stay in the logs.
    pub fn body_text(&self) -> &'static str {
        match self {
            SessionRejection::MissingLayer { .. } => {
                "Session layer is missing: is `SessionLayer` added to the router for this session type?"
            }
            SessionRejection::StoreUnavailable(_) => "Session store is unavailable, please retry later",
            SessionRejection::TooLarge { .. } => "Session is too large to be saved",
            SessionRejection::Conflict => "Session was changed by a concurrent request, please retry",
            SessionRejection::Busy => "Session is busy, please retry later",
            SessionRejection::Encoding(_) => "Session could not be saved",
            SessionRejection::TooManyInvalidCookies { .. } => {
                "Too many invalid session cookies from this client, please retry later"
            }
        }
    }
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionRejection::MissingLayer { type_name } => write!(
                f,
                "no session layer for `{type_name}` on this route: add `SessionLayer::<{type_name}>` with `Router::layer`"
            ),
            SessionRejection::StoreUnavailable(error) => write!(f, "session store failed: {error}"),
            SessionRejection::TooLarge { size, limit } => {
                write!(f, "session is {size} bytes, over the limit of {limit} bytes")
            }
            SessionRejection::Conflict => f.write_str("session was changed by a concurrent request"),
            SessionRejection::Busy => f.write_str("timed out waiting for the session lock"),
            SessionRejection::Encoding(error) => write!(f, "session could not be encoded: {error}"),
            SessionRejection::TooManyInvalidCookies { retry_after } => write!(
                f,
                "client is blocked for {} s after too many invalid session cookies",
                retry_after.as_secs()
            ),
        }
    }
}

impl std::error::Error for SessionRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionRejection::StoreUnavailable(error) => Some(error),
            _ => None,
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match &self {
            SessionRejection::MissingLayer { .. } | SessionRejection::Encoding(_) => {
                tracing::error!(error = %self, "session rejection");
            }
            SessionRejection::StoreUnavailable(_) => {
                tracing::error!(error = %self, "session rejection")
            }
            SessionRejection::TooLarge { .. }
            | SessionRejection::Conflict
            | SessionRejection::Busy => {
                tracing::warn!(error = %self, "session rejection");
            }
            // The layer warned once when the client went over the limit.
            SessionRejection::TooManyInvalidCookies { .. } => {
                tracing::debug!(error = %self, "session rejection");
            }
        }
        let mut response = (self.status(), self.body_text()).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let SessionRejection::TooManyInvalidCookies { retry_after } = &self {
            // Whole seconds, rounded up so that a retry never comes early.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

/// The reason an authentication or role guard rejected the request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No signed-in user. 401, or a 303 to the login page on routes under a
    /// [`LoginRedirectLayer`](crate::LoginRedirectLayer).
    Unauthenticated {
        /// The login URL with the `next` parameter, when redirecting.
        redirect_to: Option<String>,
    },
    /// A signed-in user without the required role. 403, never a redirect,
    /// so there is no redirect loop.
    Forbidden {
        /// The role that was required.
        role: &'static str,
    },
}

impl AuthRejection {
    /// Returns the HTTP status of the rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthRejection::Unauthenticated {
                redirect_to: Some(_),
            } => StatusCode::SEE_OTHER,
            AuthRejection::Unauthenticated { redirect_to: None } => StatusCode::UNAUTHORIZED,
            AuthRejection::Forbidden { .. } => StatusCode::FORBIDDEN,
        }
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthRejection::Unauthenticated { .. } => f.write_str("authentication required"),
            AuthRejection::Forbidden { role } => write!(f, "role `{role}` required"),
        }
    }
}

impl std::error::Error for AuthRejection {}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        tracing::debug!(rejection = %self, "auth guard rejected the request");
        let mut response = match &self {
            AuthRejection::Unauthenticated {
                redirect_to: Some(location),
            } => match HeaderValue::from_str(location) {
                Ok(location) => {
                    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
                }
                Err(_) => (StatusCode::UNAUTHORIZED, "Authentication required").into_response(),
            },
            AuthRejection::Unauthenticated { redirect_to: None } => {
                (StatusCode::UNAUTHORIZED, "Authentication required").into_response()
            }
            AuthRejection::Forbidden { .. } => (StatusCode::FORBIDDEN, "Forbidden").into_response(),
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The rejection of [`RequireAuth`](crate::RequireAuth) and
/// [`RequireRole`](crate::RequireRole): either the session failed to load or
/// the guard refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum GuardRejection {
    /// The session could not be loaded.
    Session(SessionRejection),
    /// The guard refused the request.
    Auth(AuthRejection),
}

impl fmt::Display for GuardRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardRejection::Session(rejection) => rejection.fmt(f),
            GuardRejection::Auth(rejection) => rejection.fmt(f),
        }
    }
}

impl std::error::Error for GuardRejection {}

impl From<SessionRejection> for GuardRejection {
    fn from(rejection: SessionRejection) -> Self {
        GuardRejection::Session(rejection)
    }
}

impl From<AuthRejection> for GuardRejection {
    fn from(rejection: AuthRejection) -> Self {
        GuardRejection::Auth(rejection)
    }
}

impl IntoResponse for GuardRejection {
    fn into_response(self) -> Response {
        match self {
            GuardRejection::Session(rejection) => rejection.into_response(),
            GuardRejection::Auth(rejection) => rejection.into_response(),
        }
    }
}
