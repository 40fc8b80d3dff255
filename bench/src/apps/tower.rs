//! The app over tower-sessions, for both versions the benchmarks use.
//!
//! The whole [`BenchUser`] is one session value under [`USER_KEY`], read with
//! `Session::get` and written back with `Session::insert`, as the `Counter`
//! example in the tower-sessions 0.15 crate documentation does.

/// Key of the user value in a tower-sessions session.
pub const USER_KEY: &str = "user";

/// Defines `router()` over the `Session` extractor of one tower-sessions crate.
macro_rules! tower_sessions_routes {
    ($krate:ident) => {
        use axum::extract::Query;
        use axum::http::StatusCode;
        use axum::routing::{get, post};
        use axum::Router;
        use $krate::Session;

        use super::USER_KEY;
        use crate::apps::{LoginParams, UNTOUCHED_BODY};
        use crate::BenchUser;

        /// Builds the routes; the caller adds the `SessionManagerLayer`.
        pub fn routes() -> Router {
            Router::new()
                .route("/login", post(login))
                .route("/read", get(read))
                .route("/write", post(write))
                .route("/untouched", get(|| async { UNTOUCHED_BODY }))
        }

        async fn login(
            session: Session,
            Query(params): Query<LoginParams>,
        ) -> Result<&'static str, StatusCode> {
            let mut user = BenchUser::sample();
            if let Some(id) = params.user {
                user.user_id = Some(id);
            }
            session
                .insert(USER_KEY, &user)
                .await
                .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
            Ok("ok")
        }

        async fn read(session: Session) -> Result<String, StatusCode> {
            let user: Option<BenchUser> = session
                .get(USER_KEY)
                .await
                .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
            user.map(|user| user.name).ok_or(StatusCode::UNAUTHORIZED)
        }

        async fn write(session: Session) -> Result<String, StatusCode> {
            let mut user: BenchUser = session
                .get(USER_KEY)
                .await
                .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
                .ok_or(StatusCode::UNAUTHORIZED)?;
            user.visits += 1;
            session
                .insert(USER_KEY, &user)
                .await
                .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
            Ok(user.visits.to_string())
        }
    };
}

/// Routes for tower-sessions 0.15, used with its memory store.
pub mod v015 {
    tower_sessions_routes!(tower_sessions);
}

/// Routes for tower-sessions 0.14, used with tower-sessions-redis-store 0.16.
pub mod v014 {
    tower_sessions_routes!(tower_sessions_014);
}
