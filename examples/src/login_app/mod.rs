//! A complete sign-in flow on `session-axum`: run it with
//! `cargo run --example login_app`, then open <http://127.0.0.1:3000>.
//!
//! Pages:
//!
//! - `GET /` greets the signed-in user and shows flash messages.
//! - `GET /login` and `POST /login` sign a demo user in, regenerating the
//!   session id; a failed attempt returns to the form with an error.
//! - `GET /profile` needs a signed-in user; `GET /admin` also needs the
//!   `admin` role and shows other users a 403 page.
//! - `POST /logout` destroys the session server-side.
//!
//! Environment variables:
//!
//! - `PORT`: the port on 127.0.0.1 (default 3000).
//! - `SESSION_SECRET`: at least 32 bytes. When unset, a random secret is
//!   drawn at start-up, so sessions do not survive a restart.
//! - `SESSION_STORE`: the session store, one of
//!   - `memory` (the default): sessions live in this process and are lost
//!     when it stops.
//!   - `cookie`: each session is sealed (AES-256-GCM) into its cookie, so
//!     the server keeps no sessions. Ids of logged-out sessions are kept in
//!     memory, so that copies of a logged-out cookie are anonymous. After a
//!     restart those copies are valid again until they expire.
//!   - `redis`: sessions live in Redis, sealed at rest with keys derived
//!     from `SESSION_SECRET`, behind retries and a circuit breaker. Every
//!     instance with the same `SESSION_SECRET`, `REDIS_URL` and
//!     `SESSION_REDIS_PREFIX` serves the same sessions.
//! - `REDIS_URL`: the Redis server for `redis` (default
//!   `redis://127.0.0.1:6379`). The app sends a `PING` at start-up and
//!   exits with an error if Redis does not reply.
//! - `SESSION_REDIS_PREFIX`: the prefix of every Redis key the app writes
//!   (default `login_app:session:`).
//! - `RUST_LOG`: the log filter, such as `debug` (default `info`).
//!
//! The store in use is printed at start-up.
//!
//! The session cookie comes from `SessionConfig::development`, which leaves
//! out `Secure` so that browsers keep it on plain-HTTP localhost. Use
//! `SessionConfig::production` behind HTTPS.
//!
//! Sign-in and sign-out are `POST` forms. The session cookie is
//! `SameSite=Lax`, so browsers do not send it with cross-site `POST`
//! requests.
//!
//! NOTE: the forms carry no CSRF token, so a cross-site page can still sign
//! a visitor in to a demo account (login CSRF). Add tokens in a real app.

mod routes;
mod session;
mod settings;
mod store;
mod templates;
mod users;

use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use rand::TryRngCore;
use session_axum::session_core::{ClusterConfigError, ConfigError, RedisConfigError, StoreError};
use session_axum::{SessionConfig, SessionLayer};
use tokio::net::TcpListener;

pub use routes::{router, AppState};
pub use session::{Admin, UserSession};
pub use settings::{
    RedisSettings, SecretSource, Settings, SettingsError, StoreKind, DEFAULT_PORT,
    DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_URL,
};
pub use templates::Templates;
pub use users::{DemoAccount, User, Users, DEMO_ACCOUNTS};

/// Length in bytes of the secret drawn when `SESSION_SECRET` is unset.
const GENERATED_SECRET_LEN: usize = 64;

/// An error that kept the app from starting or stopped it.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The session configuration is invalid, such as a `SESSION_SECRET`
    /// shorter than 32 bytes.
    Config(ConfigError),
    /// The operating system could not supply random bytes for a secret.
    Random(rand::rand_core::OsError),
    /// Hashing the demo passwords failed.
    PasswordHash(argon2::password_hash::Error),
    /// `REDIS_URL` or `SESSION_REDIS_PREFIX` is invalid.
    RedisConfig {
        /// `REDIS_URL` without its password.
        url: String,
        /// The store builder's error.
        source: RedisConfigError,
    },
    /// The clustered store's settings are invalid.
    ClusterConfig {
        /// `REDIS_URL` without its password.
        url: String,
        /// The store builder's error.
        source: ClusterConfigError,
    },
    /// The start-up `PING` to the Redis server at `REDIS_URL` failed, such as
    /// when nothing listens there or the password is wrong.
    RedisUnavailable {
        /// `REDIS_URL` without its password.
        url: String,
        /// The store's error.
        source: StoreError,
    },
    /// The listening socket could not be opened.
    Bind {
        /// The address that was requested.
        address: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The server failed while running.
    Serve(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(error) => write!(f, "invalid session configuration: {error}"),
            StartError::Random(error) => write!(f, "could not generate a session secret: {error}"),
            StartError::PasswordHash(error) => {
                write!(f, "could not hash the demo passwords: {error}")
            }
            StartError::RedisConfig { url, source } => store::describe_config_error(f, url, source),
            StartError::ClusterConfig { url, source } => write!(
                f,
                "could not build the clustered session store for REDIS_URL {url}: {source}"
            ),
            StartError::RedisUnavailable { url, source } => write!(
                f,
                "the start-up PING to Redis at REDIS_URL {url} failed: {source}; check that Redis \
                 is running there and that the address and password in REDIS_URL are right"
            ),
            StartError::Bind { address, source } => {
                write!(
                    f,
                    "could not listen on {address}: {source}; set PORT to a free port"
                )
            }
            StartError::Serve(error) => write!(f, "server failed: {error}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(error) => Some(error),
            StartError::Random(error) => Some(error),
            StartError::Bind { source, .. } => Some(source),
            StartError::Serve(error) => Some(error),
            StartError::RedisConfig { source, .. } => Some(source),
            StartError::RedisUnavailable { source, .. } => Some(source),
            StartError::ClusterConfig { source, .. } => Some(source),
            StartError::PasswordHash(_) => None,
        }
    }
}

/// The app, built and ready to serve.
#[derive(Debug, Clone)]
pub struct LoginApp {
    /// The router, with the session layer applied.
    pub router: Router,
    /// The session layer, kept for [`SessionLayer::shutdown`] and
    /// [`SessionLayer::test_cookie`].
    pub layer: SessionLayer<UserSession>,
}

impl LoginApp {
    /// Builds the session configuration, the store, the demo users and the
    /// router from `settings`. For `SESSION_STORE=redis` this sends one
    /// `PING` to check that Redis is reachable.
    ///
    /// # Errors
    ///
    /// A [`StartError`] when the secret is too short, no random secret can
    /// be drawn, the Redis settings are invalid, Redis is unreachable, or
    /// the demo passwords cannot be hashed.
    pub async fn from_settings(settings: &Settings) -> Result<Self, StartError> {
        let config = session_config(&settings.secret)?;
        Self::with_config(settings, config).await
    }

    /// Builds the app as [`LoginApp::from_settings`] does, but with a
    /// session configuration of the caller's, such as one with a
    /// `ManualClock` in tests. `settings.secret` is not used.
    ///
    /// # Errors
    ///
    /// A [`StartError`] when the Redis settings are invalid, Redis is
    /// unreachable, or the demo passwords cannot be hashed.
    pub async fn with_config(
        settings: &Settings,
        config: SessionConfig,
    ) -> Result<Self, StartError> {
        let layer = store::session_layer(settings, config).await?;
        let users = Users::demo().map_err(StartError::PasswordHash)?;
        Ok(Self {
            router: router(layer.clone(), users),
            layer,
        })
    }

    /// Serves the app on `listener` until `shutdown` completes, then lets
    /// open requests finish and shuts the session store down.
    ///
    /// # Errors
    ///
    /// The I/O error that stopped the server.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        // The peer address lets the session layer count invalid session
        // cookies per client.
        let app = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(StartError::Serve)?;
        tracing::info!("server stopped; shutting the session store down");
        if let Err(error) = self.layer.shutdown().await {
            tracing::error!(%error, "session store shutdown failed");
        }
        Ok(())
    }
}

/// Builds the development session configuration with the secret from
/// `SESSION_SECRET`, or a random one when it is unset.
fn session_config(secret: &SecretSource) -> Result<SessionConfig, StartError> {
    let builder = match secret {
        SecretSource::Environment(bytes) => SessionConfig::development(bytes),
        SecretSource::Generated => {
            let mut bytes = [0u8; GENERATED_SECRET_LEN];
            rand::rngs::OsRng
                .try_fill_bytes(&mut bytes)
                .map_err(StartError::Random)?;
            tracing::warn!(
                "SESSION_SECRET is not set; using a random secret, so sessions will not survive a restart"
            );
            SessionConfig::development(bytes)
        }
    };
    builder.build().map_err(StartError::Config)
}

/// Starts the app as `cargo run --example login_app` does: builds it from
/// `settings`, listens on 127.0.0.1, prints the demo accounts and the
/// address, and serves until `shutdown` completes.
///
/// # Errors
///
/// A [`StartError`] when the app cannot be built, the port cannot be opened
/// or the server fails.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app = LoginApp::from_settings(&settings).await?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.port));
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })?;
    let local = listener.local_addr().map_err(StartError::Serve)?;

    println!("Demo accounts (username / password, role):");
    for account in DEMO_ACCOUNTS {
        println!(
            "  {} / {}, {}",
            account.username, account.password, account.role
        );
    }
    println!("session store: {}", store::describe(&settings));
    println!("listening on http://{local}");
    tracing::info!(store = %settings.store, %local, "login_app started");

    app.serve(listener, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn short_secret_is_a_config_error() {
        let settings = Settings {
            port: 0,
            secret: SecretSource::Environment(b"too short".to_vec()),
            store: StoreKind::Memory,
            redis: RedisSettings::default(),
        };
        let error = LoginApp::from_settings(&settings).await.unwrap_err();
        assert!(matches!(error, StartError::Config(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "invalid session configuration: `secret` is invalid: secret is 9 bytes long but at least 32 are \
             required; generate one with `openssl rand -base64 48`"
        );
    }

    #[test]
    fn missing_secret_is_generated() {
        let config = session_config(&SecretSource::Generated).unwrap();
        assert!(!config.cookie().secure());
        assert_eq!(config.cookie().name(), "id");
    }
}
