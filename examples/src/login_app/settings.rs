//! Start-up settings read from environment variables.

use std::fmt;

/// The port used when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 3000;

/// The session store backing the app, from `SESSION_STORE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// The in-process memory store (`memory`, the default). Sessions are
    /// lost when the process stops.
    Memory,
}

impl StoreKind {
    /// The values `SESSION_STORE` accepts, in the order they are listed in
    /// error messages.
    pub const SUPPORTED: &'static [&'static str] = &["memory"];

    /// Parses a `SESSION_STORE` value.
    ///
    /// # Errors
    ///
    /// [`SettingsError::UnsupportedStore`] for any value not in
    /// [`StoreKind::SUPPORTED`].
    pub fn parse(value: &str) -> Result<Self, SettingsError> {
        match value {
            "memory" => Ok(StoreKind::Memory),
            other => Err(SettingsError::UnsupportedStore(other.to_owned())),
        }
    }
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
        Ok(Self {
            port,
            secret,
            store,
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
            r#"SESSION_STORE "postgres" is not supported; supported values: memory"#
        );
    }

    #[test]
    fn secret_debug_output_is_redacted() {
        let source = SecretSource::Environment(b"very secret value of 32 bytes!!!".to_vec());
        assert_eq!(format!("{source:?}"), "Environment(REDACTED, 32 bytes)");
    }
}
