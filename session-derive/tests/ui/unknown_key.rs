use serde::{Deserialize, Serialize};
use session_derive::Session;

#[derive(Session, Default, Clone, Serialize, Deserialize)]
#[session(name = "user")]
struct StructKey {
    #[session(identity)]
    user_id: Option<i64>,
    #[session(roles)]
    roles: Vec<String>,
}

#[derive(Session, Default, Clone, Serialize, Deserialize)]
struct FieldKey {
    #[session(id)]
    user_id: Option<i64>,
}

fn main() {}
