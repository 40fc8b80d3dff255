//! Start-up settings read from environment variables.

use std::fmt;

/// The port used when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 3000;

/// The URL used when `REDIS_URL` is not set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The key prefix used when `SESSION_REDIS_PREFIX` is not set.
pub const DEFAULT_REDIS_PREFIX: &str = "login_app:session:";

/// The session store backing the app, from `SESSION_STORE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// The in-process memory store (`memory`, the default). Sessions are
    /// lost when the process stops.
    Memory,
    /// The encrypted cookie store (`cookie`): each session is sealed into
    /// its cookie. Logged-out session ids are kept in memory, so copies of
    /// a logged-out cookie stay anonymous until the process restarts.
    Cookie,
    /// Redis at `REDIS_URL` (`redis`), values encrypted at rest, behind
    /// retries and a circuit breaker. Sessions survive restarts and are
    /// shared by every instance with the same secret and key prefix.
    Redis,
    /// Redis at `REDIS_URL` with a local cache on each instance (`cluster`):
    /// every change is published so other instances evict their copy, and
    /// reads are fenced so a logout on one instance holds on the next
    /// request to any other. Values are encrypted at rest.
    Cluster,
}

impl StoreKind {
    /// The values `SESSION_STORE` accepts, in the order they are listed in
    /// error messages.
    pub const SUPPORTED: &'static [&'static str] = &["memory", "cookie", "redis", "cluster"];

    /// Parses a `SESSION_STORE` value.
    ///
    /// # Errors
    ///
    /// [`SettingsError::UnsupportedStore`] for any value not in
    /// [`StoreKind::SUPPORTED`].
    pub fn parse(value: &str) -> Result<Self, SettingsError> {
        match value {
            "memory" => Ok(StoreKind::Memory),
            "cookie" => Ok(StoreKind::Cookie),
            "redis" => Ok(StoreKind::Redis),
            "cluster" => Ok(StoreKind::Cluster),
            other => Err(SettingsError::UnsupportedStore(other.to_owned())),
        }
    }

    /// Returns the `SESSION_STORE` value that selects this store.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Cookie => "cookie",
            StoreKind::Redis => "redis",
            StoreKind::Cluster => "cluster",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Redis server and key prefix of the `redis` store. They are read for
/// every store but used only by `redis`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// The server URL (`REDIS_URL`), such as
    /// `redis://user:password@127.0.0.1:6379/0`. It may contain a password,
    /// so print [`RedisSettings::redacted_url`] instead.
    pub url: String,
    /// The prefix of every key the store writes (`SESSION_REDIS_PREFIX`).
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: DEFAULT_REDIS_URL.to_owned(),
            key_prefix: DEFAULT_REDIS_PREFIX.to_owned(),
        }
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.redacted_url())
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

impl RedisSettings {
    /// Returns the URL without its user name, password and query, so that
    /// it can be printed and logged: `redis://user:secret@host:6379/0?x=y`
    /// becomes `redis://***@host:6379/0`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// Removes the user information and the query of a URL.
///
/// Everything up to the last `@` is hidden, so that a password containing
/// `/`, `?` or `@` never shows. A value without `://` is not a URL the store
/// accepts, and it might be a password set in the wrong variable, so only a
/// placeholder is returned.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    let (user_info, host_and_path) = match rest.rsplit_once('@') {
        Some((_, after)) => ("***@", after),
        None => ("", rest),
    };
    let host_and_path = host_and_path.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}://{user_info}{host_and_path}")
}

/// The source of the session secret.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Bytes of `SESSION_SECRET`, not yet checked for length.
    Environment(Vec<u8>),
    /// `SESSION_SECRET` is unset: a random secret is drawn at start-up, and
    /// sessions do not survive a restart.
    Generated,
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Environment(bytes) => {
                write!(f, "Environment(REDACTED, {} bytes)", bytes.len())
            }
            SecretSource::Generated => f.write_str("Generated"),
        }
    }
}

/// The app's start-up settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The TCP port on 127.0.0.1 (`PORT`, default 3000; 0 picks a free port).
    pub port: u16,
    /// The session secret (`SESSION_SECRET`).
    pub secret: SecretSource,
    /// The session store (`SESSION_STORE`, default `memory`).
    pub store: StoreKind,
    /// The Redis server and key prefix (`REDIS_URL`, default
    /// `redis://127.0.0.1:6379`, and `SESSION_REDIS_PREFIX`, default
    /// `login_app:session:`).
    pub redis: RedisSettings,
}

/// An invalid environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsError {
    /// `PORT` is not a number from 0 to 65535.
    InvalidPort(String),
    /// `SESSION_STORE` names a store this example does not support.
    UnsupportedStore(String),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::InvalidPort(value) => {
                write!(
                    f,
                    "PORT {value:?} is invalid: expected a port number from 0 to 65535"
                )
            }
            SettingsError::UnsupportedStore(value) => write!(
                f,
                "SESSION_STORE {value:?} is not supported; supported values: {}",
                StoreKind::SUPPORTED.join(", ")
            ),
        }
    }
}

impl std::error::Error for SettingsError {}

impl Settings {
    /// Reads the settings from the process environment.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the variable that is invalid.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// Reads the settings through `lookup`, which returns a variable's value
    /// or `None` when it is unset.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the variable that is invalid.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let port = match lookup("PORT") {
            None => DEFAULT_PORT,
            Some(value) => value
                .trim()
                .parse()
                .map_err(|_| SettingsError::InvalidPort(value))?,
        };
        let secret = match lookup("SESSION_SECRET") {
            None => SecretSource::Generated,
            Some(value) => SecretSource::Environment(value.into_bytes()),
        };
        let store = match lookup("SESSION_STORE") {
            None => StoreKind::Memory,
            Some(value) => StoreKind::parse(value.trim())?,
        };
        let defaults = RedisSettings::default();
        let redis = RedisSettings {
            url: lookup("REDIS_URL").unwrap_or(defaults.url),
            key_prefix: lookup("SESSION_REDIS_PREFIX").unwrap_or(defaults.key_prefix),
        };
        Ok(Self {
            port,
            secret,
            store,
            redis,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let settings = settings(&[]).unwrap();
        assert_eq!(settings.port, 3000);
        assert_eq!(settings.secret, SecretSource::Generated);
        assert_eq!(settings.store, StoreKind::Memory);
        assert_eq!(settings.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(settings.redis.key_prefix, "login_app:session:");
    }

    #[test]
    fn variables_override_the_defaults() {
        let secret = "s".repeat(40);
        let settings = settings(&[
            ("PORT", "3801"),
            ("SESSION_SECRET", &secret),
            ("SESSION_STORE", "memory"),
        ])
        .unwrap();
        assert_eq!(settings.port, 3801);
        assert_eq!(
            settings.secret,
            SecretSource::Environment(secret.into_bytes())
        );
        assert_eq!(settings.store, StoreKind::Memory);
    }

    #[test]
    fn redis_variables_override_the_defaults() {
        let redis = settings(&[
            ("SESSION_STORE", "redis"),
            ("REDIS_URL", "redis://127.0.0.1:6380/2"),
            ("SESSION_REDIS_PREFIX", "shop:session:"),
        ])
        .unwrap();
        assert_eq!(redis.store, StoreKind::Redis);
        assert_eq!(redis.redis.url, "redis://127.0.0.1:6380/2");
        assert_eq!(redis.redis.key_prefix, "shop:session:");
    }

    #[test]
    fn every_supported_store_parses_to_its_name() {
        for name in StoreKind::SUPPORTED {
            let store = StoreKind::parse(name).unwrap();
            assert_eq!(store.name(), *name);
            assert_eq!(store.to_string(), *name);
        }
        assert_eq!(StoreKind::parse("cookie").unwrap(), StoreKind::Cookie);
        assert_eq!(StoreKind::parse("redis").unwrap(), StoreKind::Redis);
        assert_eq!(StoreKind::parse("cluster").unwrap(), StoreKind::Cluster);
        assert_eq!(
            settings(&[("SESSION_STORE", " cookie ")]).unwrap().store,
            StoreKind::Cookie
        );
    }

    #[test]
    fn invalid_port_is_rejected() {
        for bad in ["", "http", "-1", "65536"] {
            let error = settings(&[("PORT", bad)]).unwrap_err();
            assert_eq!(error, SettingsError::InvalidPort(bad.to_owned()));
        }
        assert_eq!(
            settings(&[("PORT", "80a")]).unwrap_err().to_string(),
            r#"PORT "80a" is invalid: expected a port number from 0 to 65535"#
        );
    }

    #[test]
    fn unsupported_store_lists_the_supported_values() {
        let error = settings(&[("SESSION_STORE", "postgres")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"SESSION_STORE "postgres" is not supported; supported values: memory, cookie, redis, cluster"#
        );
    }

    #[test]
    fn secret_debug_output_is_redacted() {
        let source = SecretSource::Environment(b"very secret value of 32 bytes!!!".to_vec());
        assert_eq!(format!("{source:?}"), "Environment(REDACTED, 32 bytes)");
    }

    #[test]
    fn redis_url_is_redacted() {
        let cases = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://127.0.0.1:6379/2", "redis://127.0.0.1:6379/2"),
            (
                "redis://app:hunter2@127.0.0.1:6379/0",
                "redis://***@127.0.0.1:6379/0",
            ),
            ("redis://:hunter2@[::1]:6379", "redis://***@[::1]:6379"),
            (
                "redis://:hun/ter?2@127.0.0.1:6379",
                "redis://***@127.0.0.1:6379",
            ),
            ("redis://:a@b@127.0.0.1", "redis://***@127.0.0.1"),
            (
                "redis://127.0.0.1/0?password=hunter2",
                "redis://127.0.0.1/0",
            ),
            ("hunter2", "(not a URL)"),
        ];
        for (url, expected) in cases {
            let settings = RedisSettings {
                url: url.to_owned(),
                key_prefix: "p:".to_owned(),
            };
            assert_eq!(settings.redacted_url(), expected, "{url}");
        }

        let settings = RedisSettings {
            url: "redis://app:hunter2@127.0.0.1:6379".to_owned(),
            key_prefix: "p:".to_owned(),
        };
        assert_eq!(
            format!("{settings:?}"),
            r#"RedisSettings { url: "redis://***@127.0.0.1:6379", key_prefix: "p:" }"#
        );
    }
}
