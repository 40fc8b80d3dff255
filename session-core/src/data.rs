//! The contract between the user's session struct and the library.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The user's typed session data.
///
/// Implement it with `#[derive(Session)]` from `session-derive` (re-exported
/// by `session-axum`), which reads the identity and roles from marked fields.
/// A manual implementation is a few lines:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use session_core::SessionData;
///
/// #[derive(Default, Clone, Serialize, Deserialize)]
/// struct Visitor {
///     user_id: Option<u64>,
///     cart: Vec<String>,
/// }
///
/// impl SessionData for Visitor {
///     fn identity(&self) -> Option<String> {
///         self.user_id.map(|id| id.to_string())
///     }
/// }
///
/// assert!(!Visitor::default().is_authenticated());
/// ```
///
/// Records are encoded with postcard, which is not self-describing: serde
/// features that need `deserialize_any`, such as `#[serde(flatten)]` or
/// untagged enums, do not round-trip.
pub trait SessionData:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Returns the signed-in user's identity, or `None` for an anonymous
    /// session. Stores index sessions by this value, so that all sessions of
    /// one user can be listed and deleted.
    fn identity(&self) -> Option<String>;

    /// Returns true when the session belongs to a signed-in user.
    fn is_authenticated(&self) -> bool {
        self.identity().is_some()
    }

    /// Returns the roles held by the user.
    fn roles(&self) -> Vec<&str> {
        Vec::new()
    }

    /// Returns true when the user holds `role`.
    fn has_role(&self, role: &str) -> bool {
        self.roles().contains(&role)
    }
}

/// A role as a type, for guards such as `RequireRole<T, Admin>`.
///
/// `#[derive(Session)]` generates one unit struct implementing `Role` per
/// declared role.
pub trait Role: Send + Sync + 'static {
    /// The role's name as stored in the session's roles field.
    const NAME: &'static str;
}
