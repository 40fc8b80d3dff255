use serde::{Deserialize, Serialize};
use session_derive::Session;

#[derive(Session, Default, Clone, Serialize, Deserialize)]
#[session(role(Admin = "admin"))]
struct UserSession {
    #[session(identity)]
    user_id: Option<i64>,
    roles: Vec<String>,
}

fn main() {}
