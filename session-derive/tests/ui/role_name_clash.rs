use serde::{Deserialize, Serialize};
use session_derive::Session;

#[derive(Session, Default, Clone, Serialize, Deserialize)]
#[session(role(HTTPAdmin = "http-admin"), role(HttpAdmin = "admin"))]
#[session(role(UserSession = "user"), role(Guest = ""))]
struct UserSession {
    #[session(identity)]
    user_id: Option<i64>,
    #[session(roles)]
    roles: Vec<String>,
}

fn main() {}
