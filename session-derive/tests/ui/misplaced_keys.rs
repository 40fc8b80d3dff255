use serde::{Deserialize, Serialize};
use session_derive::Session;

#[derive(Session, Default, Clone, Serialize, Deserialize)]
#[session(identity, roles(Admin = "admin"))]
struct UserSession {
    #[session(identity)]
    user_id: Option<i64>,
    #[session(roles, role(Admin = "admin"), crate = "::session_core")]
    roles: Vec<String>,
}

fn main() {}
