//! Typed, secure and fast sessions for axum.
//!
//! Add a [`SessionLayer`] to the router, derive [`Session`] on your session
//! struct, and take [`CurrentSession`], [`Flash`], [`RequireAuth`] or
//! [`RequireRole`] in your handlers:
//!
//! ```
//! use axum::{response::Redirect, routing::{get, post}, Router};
//! use serde::{Deserialize, Serialize};
//! use session_axum::{
//!     CurrentSession, Flash, LoginRedirectLayer, MemoryStore, RequireAuth, RequireRole, Session,
//!     SessionConfig, SessionLayer,
//! };
//!
//! #[derive(Session, Default, Clone, Serialize, Deserialize)]
//! #[session(role(Admin = "admin"))]
//! struct UserSession {
//!     #[session(identity)]
//!     user_id: Option<i64>,
//!     username: Option<String>,
//!     #[session(roles)]
//!     roles: Vec<String>,
//! }
//!
//! async fn login(session: CurrentSession<UserSession>, flash: Flash) -> Redirect {
//!     // Check the password first; then:
//!     session.regenerate();
//!     session.set(UserSession { user_id: Some(1), username: Some("alice".into()), roles: vec!["admin".into()] });
//!     flash.notice("Welcome back, alice!");
//!     Redirect::to("/")
//! }
//!
//! async fn profile(RequireAuth(session): RequireAuth<UserSession>) -> String {
//!     session.data().username.unwrap_or_default()
//! }
//!
//! async fn admin(_: RequireRole<UserSession, Admin>) -> &'static str {
//!     "admin area"
//! }
//!
//! let config = SessionConfig::development(std::env::var("SESSION_SECRET").unwrap_or_else(|_| "x".repeat(32)))
//!     .build()
//!     .expect("valid session configuration");
//! let app: Router = Router::new()
//!     .route("/profile", get(profile))
//!     .route("/admin", get(admin))
//!     .route_layer(LoginRedirectLayer::new("/login"))
//!     .route("/login", post(login))
//!     .layer(SessionLayer::<UserSession>::new(MemoryStore::default(), config));
//! ```
//!
//! The session lives in the request: nothing mutable is shared between
//! requests. See `session_core` for configuration, stores and the security
//! model.

mod extract;
mod guard;
mod handle;
mod invalid_cookies;
mod layer;
mod locks;
mod records;
mod rejection;
mod testing;

pub use extract::current::CurrentSession;
pub use extract::flash::Flash;
pub use guard::{safe_next, LoginRedirectLayer, LoginRedirectService, RequireAuth, RequireRole};
pub use invalid_cookies::InvalidCookieLimit;
pub use layer::{Revalidation, SessionFuture, SessionLayer, SessionService, StoreFailureMode};
pub use rejection::{AuthRejection, GuardRejection, SessionRejection};

pub use session_core;
#[cfg(feature = "redis")]
pub use session_core::ClusteredRedisStore;
#[cfg(feature = "redis")]
pub use session_core::RedisStore;
pub use session_core::{
    BindingPolicy, Clock, CookieLifetime, CookieStore, FlashLevel, FlashMessage, ManualClock,
    MemoryStore, ResilientStore, Role, SameSite, SessionConfig, SessionData, SessionEvent,
    SessionEventKind, SessionEvents, SessionExpiry, SessionStore,
};
pub use session_derive::Session;
/// The `time` crate, whose `Duration` the configuration takes for idle
/// timeouts, lifetimes and intervals, so that apps need not add it.
pub use time;
