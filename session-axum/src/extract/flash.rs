//! The `Flash` extractor.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use session_core::{FlashLevel, FlashMessage, FlashState};

use crate::handle::HandleExtension;
use crate::rejection::SessionRejection;

/// The flash messages of the current request's session, with Rails
/// semantics: [`Flash::set`] (and the level shortcuts) shows a message on the
/// next request that loads the session, [`Flash::now`] in this one only;
/// reading never consumes; messages shown in a request are dropped after it
/// unless kept.
///
/// Setting a message before returning a redirect is enough: the layer saves
/// it before the redirect leaves the server.
///
/// ```
/// use axum::response::Redirect;
/// use session_axum::Flash;
///
/// async fn save_settings(flash: Flash) -> Redirect {
///     flash.success("Settings saved");
///     Redirect::to("/settings")
/// }
/// ```
#[derive(Clone)]
pub struct Flash {
    pub(crate) handle: HandleExtension,
}

impl fmt::Debug for Flash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flash")
            .field("messages", &self.messages().len())
            .finish()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Flash {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let handle = parts
            .extensions
            .get::<HandleExtension>()
            .cloned()
            .ok_or(SessionRejection::MissingLayer { type_name: "Flash" })?;
        handle.0.ensure_loaded(parts).await?;
        Ok(Self { handle })
    }
}

impl Flash {
    fn with<R>(&self, f: impl FnOnce(&mut FlashState) -> R) -> R {
        let mut f = Some(f);
        let mut result = None;
        self.handle.0.with_flash(&mut |state| {
            if let Some(f) = f.take() {
                result = Some(f(state));
            }
        });
        result.expect("with_flash calls the closure exactly once")
    }

    /// Returns the messages visible in this request.
    pub fn messages(&self) -> Vec<FlashMessage> {
        self.with(|state| state.messages().cloned().collect())
    }

    /// Returns the visible message with this key.
    pub fn get(&self, key: &str) -> Option<String> {
        self.with(|state| state.get(key).map(str::to_owned))
    }

    /// Queues a message for the next request.
    pub fn set(&self, key: impl Into<String>, message: impl Into<String>) {
        let (key, message) = (key.into(), message.into());
        self.with(|state| state.set(key, message));
    }

    /// Shows a message in this request only.
    pub fn now(&self, key: impl Into<String>, message: impl Into<String>) {
        let (key, message) = (key.into(), message.into());
        self.with(|state| state.now(key, message));
    }

    /// Keeps the visible message with this key for the next request too.
    pub fn keep(&self, key: &str) {
        self.with(|state| state.keep(key));
    }

    /// Keeps every visible message for the next request too.
    pub fn keep_all(&self) {
        self.with(FlashState::keep_all);
    }

    /// Drops every message with this key now.
    pub fn discard(&self, key: &str) {
        self.with(|state| state.discard(key));
    }

    /// Drops every message now.
    pub fn discard_all(&self) {
        self.with(FlashState::discard_all);
    }

    /// Queues a message of `level` for the next request.
    pub fn level(&self, level: FlashLevel, message: impl Into<String>) {
        self.set(level.as_str(), message);
    }

    /// Queues a `notice` for the next request.
    pub fn notice(&self, message: impl Into<String>) {
        self.level(FlashLevel::Notice, message);
    }

    /// Queues an `alert` for the next request.
    pub fn alert(&self, message: impl Into<String>) {
        self.level(FlashLevel::Alert, message);
    }

    /// Queues an `error` for the next request.
    pub fn error(&self, message: impl Into<String>) {
        self.level(FlashLevel::Error, message);
    }

    /// Queues a `success` message for the next request.
    pub fn success(&self, message: impl Into<String>) {
        self.level(FlashLevel::Success, message);
    }

    /// Queues a `warning` for the next request.
    pub fn warning(&self, message: impl Into<String>) {
        self.level(FlashLevel::Warning, message);
    }

    /// Queues an `info` message for the next request.
    pub fn info(&self, message: impl Into<String>) {
        self.level(FlashLevel::Info, message);
    }
}
