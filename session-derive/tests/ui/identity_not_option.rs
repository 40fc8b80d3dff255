use serde::{Deserialize, Serialize};
use session_derive::Session;

#[derive(Session, Default, Clone, Serialize, Deserialize)]
struct UserSession {
    #[session(identity)]
    user_id: i64,
}

fn main() {}
