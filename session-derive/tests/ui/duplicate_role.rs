use serde::{Deserialize, Serialize};
use session_derive::Session;

#[derive(Session, Default, Clone, Serialize, Deserialize)]
#[session(role(Admin = "admin"), role(Admin = "administrator"))]
struct SameType {
    #[session(identity)]
    user_id: Option<i64>,
    #[session(roles)]
    roles: Vec<String>,
}

#[derive(Session, Default, Clone, Serialize, Deserialize)]
#[session(role(Admin = "admin", Owner = "admin"))]
struct SameName {
    #[session(identity)]
    user_id: Option<i64>,
    #[session(roles)]
    roles: Vec<String>,
}

fn main() {}
