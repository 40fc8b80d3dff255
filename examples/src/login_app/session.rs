//! The session data of the login app.

use serde::{Deserialize, Serialize};
use session_axum::Session;
use time::OffsetDateTime;

/// What the login app keeps in a signed-in user's session.
///
/// An anonymous visitor's session is `UserSession::default()`, with no
/// `user_id`. The derive implements `SessionData` and generates the `Admin`
/// role type used by `RequireRole<UserSession, Admin>`.
#[derive(Session, Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[session(role(Admin = "admin"))]
pub struct UserSession {
    /// The signed-in user's id; `None` while nobody is signed in.
    #[session(identity)]
    pub user_id: Option<u64>,
    /// The signed-in user's name, shown in greetings.
    pub username: String,
    /// The signed-in user's email address.
    pub email: String,
    /// Role names such as `admin` or `viewer`.
    #[session(roles)]
    pub roles: Vec<String>,
    /// When the user signed in.
    pub logged_in_at: Option<OffsetDateTime>,
}
