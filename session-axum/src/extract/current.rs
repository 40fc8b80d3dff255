//! The `CurrentSession<T>` extractor.

use std::fmt;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use session_core::{SessionData, SessionExpiry};

use crate::handle::{HandleExtension, SessionHandle};
use crate::rejection::SessionRejection;
use crate::Flash;

/// The session of the current request, with typed data `T`.
///
/// Extracting it loads the session (once per request, however many
/// extractors ask). Reading never writes; [`CurrentSession::update`] and
/// [`CurrentSession::set`] mark it changed and the layer saves it after the
/// handler. An anonymous visitor gets `T::default()` and no session is
/// created until something is written.
///
/// The session id is not exposed: a regenerated id exists only once the
/// layer has stored it, after the handler returns.
///
/// ```
/// use session_axum::{CurrentSession, SessionData};
/// # #[derive(session_axum::Session, Default, Clone, serde::Serialize, serde::Deserialize)]
/// # struct UserSession { #[session(identity)] user_id: Option<i64>, name: Option<String> }
///
/// async fn whoami(session: CurrentSession<UserSession>) -> String {
///     match session.data().name {
///         Some(name) if session.is_authenticated() => format!("Hello, {name}"),
///         _ => "Hello, stranger".to_owned(),
///     }
/// }
/// ```
pub struct CurrentSession<T: SessionData> {
    pub(crate) handle: Arc<SessionHandle<T>>,
    pub(crate) erased: HandleExtension,
}

impl<T: SessionData> Clone for CurrentSession<T> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            erased: self.erased.clone(),
        }
    }
}

impl<T: SessionData> fmt::Debug for CurrentSession<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentSession")
            .field("authenticated", &self.is_authenticated())
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync, T: SessionData> FromRequestParts<S> for CurrentSession<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let missing = || SessionRejection::MissingLayer {
            type_name: std::any::type_name::<T>(),
        };
        let erased = parts
            .extensions
            .get::<HandleExtension>()
            .cloned()
            .ok_or_else(missing)?;
        let handle = erased
            .0
            .clone()
            .into_any()
            .downcast::<SessionHandle<T>>()
            .map_err(|_| missing())?;
        handle.load(parts).await?;
        Ok(Self { handle, erased })
    }
}

impl<T: SessionData> CurrentSession<T> {
    /// Returns a copy of the data, or `T::default()` for an anonymous visitor.
    pub fn data(&self) -> T {
        self.handle.read(|data| data.cloned().unwrap_or_default())
    }

    /// Runs `f` on the data without copying it. `f` gets `None` when there is
    /// no session.
    pub fn read<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        self.handle.read(f)
    }

    /// Changes the data, creating the session if there is none; it is saved
    /// after the handler.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.handle.update(f)
    }

    /// Replaces the data.
    pub fn set(&self, data: T) {
        self.handle.update(|current| *current = data);
    }

    /// Returns true when there is a session, stored or created in this request.
    pub fn exists(&self) -> bool {
        self.handle.read(|data| data.is_some())
    }

    /// Returns true when a user is signed in (see [`SessionData::identity`]).
    pub fn is_authenticated(&self) -> bool {
        self.handle
            .read(|data| data.is_some_and(SessionData::is_authenticated))
    }

    /// Returns the signed-in user's identity.
    pub fn identity(&self) -> Option<String> {
        self.handle
            .read(|data| data.and_then(SessionData::identity))
    }

    /// Returns true when the signed-in user holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.handle
            .read(|data| data.is_some_and(|data| data.has_role(role)))
    }

    /// Moves the session to a new id, keeping its data, when the response is
    /// saved. Call it on login and on any privilege change, to defeat session
    /// fixation. The old id is deleted only after the new record is stored,
    /// and later changes in the same request never cancel it; only
    /// [`CurrentSession::destroy`] does.
    pub fn regenerate(&self) {
        self.handle.regenerate();
    }

    /// Deletes the session server-side and sends a removal cookie with the
    /// same attributes. Data written afterwards in the same request starts a
    /// new session under a new id.
    pub fn destroy(&self) {
        self.handle.destroy();
    }

    /// Changes how long this session lives, such as "remember me" for 30
    /// days with [`SessionExpiry::RememberFor`]. The stored deadline and the
    /// cookie's `Max-Age` change together.
    pub fn set_expiry(&self, expiry: SessionExpiry) {
        self.handle.set_expiry(expiry);
    }

    /// Returns the flash messages of this session.
    pub fn flash(&self) -> Flash {
        Flash {
            handle: self.erased.clone(),
        }
    }
}
