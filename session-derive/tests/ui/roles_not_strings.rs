use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use session_derive::Session;

#[derive(Session, Default, Clone, Serialize, Deserialize)]
struct NumericRoles {
    #[session(identity)]
    user_id: Option<i64>,
    #[session(roles)]
    roles: Vec<u32>,
}

#[derive(Session, Default, Clone, Serialize, Deserialize)]
struct MapRoles {
    #[session(identity)]
    user_id: Option<i64>,
    #[session(roles)]
    roles: HashMap<String, bool>,
}

#[derive(Session, Default, Clone, Serialize, Deserialize)]
struct SingleRole {
    #[session(identity)]
    user_id: Option<i64>,
    #[session(roles)]
    role: String,
}

fn main() {}
