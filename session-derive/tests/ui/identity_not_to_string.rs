use serde::{Deserialize, Serialize};
use session_derive::Session;

#[derive(Default, Clone, Serialize, Deserialize)]
struct UserId(u64);

#[derive(Session, Default, Clone, Serialize, Deserialize)]
struct UserSession {
    #[session(identity)]
    user_id: Option<UserId>,
}

fn main() {}
