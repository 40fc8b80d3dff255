use serde::{Deserialize, Serialize};
use session_derive::Session;

#[derive(Session, Default, Clone, Serialize, Deserialize)]
#[session(role(Admin))]
#[session(role("admin"))]
#[session(role = "admin")]
#[session(role())]
#[session(crate = 5)]
#[session(crate = "not a path")]
struct UserSession {
    #[session(identity = "user_id")]
    user_id: Option<i64>,
    #[session(roles, roles)]
    roles: Vec<String>,
}

fn main() {}
