use serde::{Deserialize, Serialize};
use session_derive::Session;

#[derive(Session, Default, Clone, Serialize, Deserialize)]
struct UserSession {
    user_id: Option<i64>,
    username: Option<String>,
}

fn main() {}
