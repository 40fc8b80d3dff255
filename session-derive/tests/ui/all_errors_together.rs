use serde::{Deserialize, Serialize};
use session_derive::Session;

// Three unrelated mistakes: all three are reported in one build.
#[derive(Session, Default, Clone, Serialize, Deserialize)]
#[session(role(Admin = "admin"), rol(Viewer = "viewer"))]
struct UserSession {
    user_id: Option<i64>,
    #[session(roles)]
    roles: Vec<char>,
}

fn main() {}
