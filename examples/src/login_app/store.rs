//! The session store that `SESSION_STORE` selects, built into the layer.

use session_axum::session_core::RedisConfigError;
use session_axum::{
    ClusteredRedisStore, CookieStore, MemoryStore, RedisStore, ResilientStore, SessionConfig,
    SessionLayer,
};

use super::session::UserSession;
use super::settings::{Settings, StoreKind};
use super::StartError;

/// Builds the session layer over the store that `settings.store` selects.
///
/// - `memory`: a [`MemoryStore`] with its default capacity.
/// - `cookie`: a [`CookieStore`] sealing with `config`, with a
///   [`MemoryStore`] of revoked session ids so that logout and sign-in make
///   earlier copies of the cookie anonymous.
/// - `redis`: a [`RedisStore`] at `settings.redis.url` under
///   `settings.redis.key_prefix`, sealing values with `config`'s keys,
///   wrapped in a [`ResilientStore`] with default retries and breaker. One
///   `PING` checks the server before the layer is returned.
/// - `cluster`: a [`ClusteredRedisStore`] on the same URL and prefix, with a
///   local cache, invalidations on the key prefix's channel, and fenced
///   reads so that a change on one instance holds on the next request to
///   any other. Its `shutdown` runs from the layer's.
///
/// # Errors
///
/// [`StartError::RedisConfig`] when the Redis URL or key prefix is invalid,
/// and [`StartError::RedisUnavailable`] when the `PING` fails.
pub(super) async fn session_layer(
    settings: &Settings,
    config: SessionConfig,
) -> Result<SessionLayer<UserSession>, StartError> {
    match settings.store {
        StoreKind::Memory => Ok(SessionLayer::new(MemoryStore::default(), config)),
        StoreKind::Cookie => {
            let store = CookieStore::new(config.clone()).revocations(MemoryStore::default());
            Ok(SessionLayer::with_cookie_store(store, config))
        }
        StoreKind::Redis => {
            let store = redis_store(settings, &config).await?;
            Ok(SessionLayer::new(ResilientStore::new(store), config))
        }
        StoreKind::Cluster => {
            let store = clustered_store(settings, &config).await?;
            Ok(SessionLayer::new(store, config))
        }
    }
}

/// Builds the clustered store and checks that Redis replies to `PING`.
async fn clustered_store(
    settings: &Settings,
    config: &SessionConfig,
) -> Result<ClusteredRedisStore, StartError> {
    let redis = &settings.redis;
    let store = ClusteredRedisStore::from_url(redis.url.clone())
        .key_prefix(redis.key_prefix.clone())
        .encrypt_with(config)
        .fenced_reads(true)
        .build()
        .await
        .map_err(|source| StartError::ClusterConfig {
            url: redis.redacted_url(),
            source,
        })?;
    store
        .ping()
        .await
        .map_err(|source| StartError::RedisUnavailable {
            url: redis.redacted_url(),
            source,
        })?;
    Ok(store)
}

/// Builds the Redis store and checks that the server replies to `PING`.
async fn redis_store(
    settings: &Settings,
    config: &SessionConfig,
) -> Result<RedisStore, StartError> {
    let redis = &settings.redis;
    let store = RedisStore::from_url(redis.url.clone())
        .key_prefix(redis.key_prefix.clone())
        .encrypt_with(config)
        .build()
        .map_err(|source| StartError::RedisConfig {
            url: redis.redacted_url(),
            source,
        })?;
    store
        .ping()
        .await
        .map_err(|source| StartError::RedisUnavailable {
            url: redis.redacted_url(),
            source,
        })?;
    Ok(store)
}

/// Returns one line naming the store in use and where it keeps sessions,
/// with no password.
pub(super) fn describe(settings: &Settings) -> String {
    match settings.store {
        StoreKind::Memory => "memory (sessions are lost when the process stops)".to_owned(),
        StoreKind::Cookie => "cookie (each session is sealed into its cookie; ids of \
                              logged-out sessions are kept in memory until the process stops)"
            .to_owned(),
        StoreKind::Redis => format!(
            "redis at {} under key prefix {:?}, values encrypted at rest",
            settings.redis.redacted_url(),
            settings.redis.key_prefix
        ),
        StoreKind::Cluster => format!(
            "cluster: redis at {} under key prefix {:?} with a local cache per instance, \
             values encrypted at rest",
            settings.redis.redacted_url(),
            settings.redis.key_prefix
        ),
    }
}

/// Formats a [`StartError::RedisConfig`], naming the variable to fix.
pub(super) fn describe_config_error(
    f: &mut std::fmt::Formatter<'_>,
    url: &str,
    error: &RedisConfigError,
) -> std::fmt::Result {
    match error {
        RedisConfigError::InvalidKeyPrefix { .. } => {
            write!(f, "SESSION_REDIS_PREFIX is invalid: {error}")
        }
        RedisConfigError::InvalidUrl { .. } => write!(f, "REDIS_URL {url} is invalid: {error}"),
        other => write!(
            f,
            "could not build the Redis session store for REDIS_URL {url}: {other}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login_app::{LoginApp, RedisSettings, SecretSource};

    const SECRET: &[u8] = b"store selection test secret, 40 bytes...";

    fn settings(store: StoreKind, url: &str, key_prefix: &str) -> Settings {
        Settings {
            port: 0,
            secret: SecretSource::Environment(SECRET.to_vec()),
            store,
            redis: RedisSettings {
                url: url.to_owned(),
                key_prefix: key_prefix.to_owned(),
            },
        }
    }

    async fn start_error(settings: &Settings) -> StartError {
        LoginApp::from_settings(settings).await.unwrap_err()
    }

    #[tokio::test]
    async fn invalid_redis_url_names_the_variable() {
        let settings = settings(
            StoreKind::Redis,
            "redis://app:hunter2@127.0.0.1:notaport",
            "p:",
        );
        let error = start_error(&settings).await;
        assert!(matches!(error, StartError::RedisConfig { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with(
                "REDIS_URL redis://***@127.0.0.1:notaport is invalid: invalid Redis URL: "
            ),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
    }

    #[tokio::test]
    async fn invalid_key_prefix_names_the_variable() {
        let settings = settings(StoreKind::Redis, "redis://127.0.0.1:6379", "app{1}:");
        let error = start_error(&settings).await;
        assert!(matches!(error, StartError::RedisConfig { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with(r#"SESSION_REDIS_PREFIX is invalid: invalid Redis key prefix "app{1}:": it must not contain"#),
            "{error}"
        );
    }

    #[tokio::test]
    async fn unreachable_redis_names_the_variable() {
        // A port that was free a moment ago; nothing listens on it now.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("redis://:hunter2@127.0.0.1:{port}/0");
        let settings = settings(StoreKind::Redis, &url, "p:");
        let error = start_error(&settings).await;
        assert!(
            matches!(error, StartError::RedisUnavailable { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        let expected_start = format!(
            "the start-up PING to Redis at REDIS_URL redis://***@127.0.0.1:{port}/0 failed: "
        );
        assert!(message.starts_with(&expected_start), "{message}");
        assert!(
            message.ends_with(
                "; check that Redis is running there and that the address and password in \
                 REDIS_URL are right"
            ),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
    }

    #[test]
    fn description_names_the_store_without_the_password() {
        let url = "redis://app:hunter2@127.0.0.1:6379/0";
        assert_eq!(
            describe(&settings(StoreKind::Memory, url, "p:")),
            "memory (sessions are lost when the process stops)"
        );
        assert!(describe(&settings(StoreKind::Cookie, url, "p:")).starts_with("cookie ("));
        assert_eq!(
            describe(&settings(StoreKind::Redis, url, "shop:session:")),
            r#"redis at redis://***@127.0.0.1:6379/0 under key prefix "shop:session:", values encrypted at rest"#
        );
    }
}
