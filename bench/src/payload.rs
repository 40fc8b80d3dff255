//! The session payload every scenario stores: a signed-in user of about 200 bytes.

use serde::{Deserialize, Serialize};
use session_axum::Session;

/// The signed-in user kept in the session by every scenario.
///
/// Its JSON form is about 200 bytes (see [`BenchUser::json_len`]); `/read`
/// returns `name` and `/write` increments `visits`.
#[derive(Session, Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchUser {
    /// Numeric user id.
    #[session(identity)]
    pub user_id: Option<u64>,
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Role names.
    #[session(roles)]
    pub roles: Vec<String>,
    /// Preferred locale.
    pub locale: String,
    /// Tenant the user belongs to.
    pub tenant: String,
    /// Counter changed by `POST /write`.
    pub visits: u64,
}

impl BenchUser {
    /// Returns the user stored by `POST /login` in every scenario.
    pub fn sample() -> Self {
        Self {
            user_id: Some(4_294_967_311),
            name: "Ada Lovelace-Byron".to_owned(),
            email: "ada.lovelace@analytical-engine.example".to_owned(),
            roles: vec![
                "viewer".to_owned(),
                "editor".to_owned(),
                "billing".to_owned(),
            ],
            locale: "en-GB".to_owned(),
            tenant: "northwind-traders-eu-west-1".to_owned(),
            visits: 0,
        }
    }

    /// Returns the length of the JSON encoding, the form tower-sessions stores.
    pub fn json_len(&self) -> usize {
        serde_json::to_vec(self).map(|json| json.len()).unwrap_or(0)
    }
}
