//! Helpers for testing endpoints that need a session.

use axum::http::HeaderValue;
use session_core::{CookieLifetime, CreateOutcome, SessionData, SessionRecord};

use crate::layer::Backend;
use crate::{SessionLayer, SessionRejection};

impl<T: SessionData> SessionLayer<T> {
    /// Stores a session holding `data` and returns a `Cookie` header value
    /// that carries it, so an endpoint can be tested with `oneshot` as a
    /// signed-in user.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum::{body::Body, http::{header, Request, StatusCode}, routing::get, Router};
    /// use session_axum::{MemoryStore, RequireAuth, Session, SessionConfig, SessionLayer};
    /// use tower::ServiceExt;
    ///
    /// #[derive(Session, Default, Clone, serde::Serialize, serde::Deserialize)]
    /// struct UserSession {
    ///     #[session(identity)]
    ///     user_id: Option<i64>,
    /// }
    ///
    /// async fn me(RequireAuth(session): RequireAuth<UserSession>) -> String {
    ///     session.identity().unwrap_or_default()
    /// }
    ///
    /// let layer = SessionLayer::new(MemoryStore::default(), SessionConfig::testing([1u8; 32]).build().unwrap());
    /// let app = Router::new().route("/me", get(me)).layer(layer.clone());
    ///
    /// let cookie = layer.test_cookie(UserSession { user_id: Some(7) }).await.unwrap();
    /// let response = app
    ///     .oneshot(Request::get("/me").header(header::COOKIE, cookie).body(Body::empty()).unwrap())
    ///     .await
    ///     .unwrap();
    /// assert_eq!(response.status(), StatusCode::OK);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A [`SessionRejection`] when the store fails or the data cannot be
    /// encoded.
    pub async fn test_cookie(&self, data: T) -> Result<HeaderValue, SessionRejection> {
        let shared = self.shared();
        let config = &shared.config;
        let record = SessionRecord::new(
            config.ids().generate(),
            data,
            config.clock().now(),
            config.idle_timeout(),
            config.absolute_lifetime(),
            config.cookie().lifetime() == CookieLifetime::Persistent,
        );
        let stored = record
            .to_stored(config.codec())
            .map_err(|error| SessionRejection::Encoding(error.to_string()))?;

        let value = match &shared.backend {
            Backend::Server(store) => {
                match store
                    .create(&stored)
                    .await
                    .map_err(SessionRejection::StoreUnavailable)?
                {
                    CreateOutcome::Created => {}
                    CreateOutcome::IdTaken => return Err(SessionRejection::Conflict),
                }
                record
                    .id()
                    .to_cookie_value(config.keys(), config.cookie().name())
            }
            Backend::Cookie(store) => {
                let set_cookie = store
                    .seal(&record, None)
                    .map_err(|error| SessionRejection::Encoding(error.to_string()))?;
                let pair = set_cookie.split(';').next().unwrap_or_default();
                pair.split_once('=')
                    .map(|(_, value)| value.to_owned())
                    .unwrap_or_default()
            }
        };
        let header = format!("{}={value}", config.cookie().name());
        Ok(HeaderValue::from_str(&header)
            .expect("cookie names and signed ids are valid header text"))
    }
}
