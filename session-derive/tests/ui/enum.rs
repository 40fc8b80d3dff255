use serde::{Deserialize, Serialize};
use session_derive::Session;

#[derive(Session, Clone, Serialize, Deserialize)]
enum UserSession {
    Anonymous,
    SignedIn { user_id: i64 },
}

fn main() {}
