//! Session configuration, its validation and the presets.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use ipnet::IpNet;
use thiserror::Error;
use time::Duration;

use crate::binding::{BindingPolicy, ClientInfo, Fingerprint, TrustedProxies};
use crate::codec::{RecordCodec, DEFAULT_MAX_DECOMPRESSED_BYTES};
use crate::events::{NoEvents, SessionEvents};
use crate::id::{IdGenerator, RandomIdGenerator};
use crate::keys::{KeyRing, Secret, SecretError};
use crate::{Clock, SystemClock};

/// The `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent only with same-site requests.
    Strict,
    /// Sent with same-site requests and top-level cross-site navigations (default).
    #[default]
    Lax,
    /// Sent with every request; requires `Secure`.
    None,
}

impl SameSite {
    /// Returns the attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// Whether the session cookie outlives the browser session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CookieLifetime {
    /// No `Max-Age` or `Expires`: the browser drops the cookie when it
    /// closes (default). The server still enforces the idle and absolute
    /// limits, since browsers that restore tabs also restore these cookies.
    #[default]
    BrowserSession,
    /// `Max-Age` equal to the time left until the session expires.
    Persistent,
}

/// A cookie name prefix that browsers enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookiePrefix {
    /// `__Host-`: requires `Secure`, `Path=/` and no `Domain`.
    Host,
    /// `__Secure-`: requires `Secure`.
    Secure,
}

/// The attributes of the session cookie, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieOptions {
    name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    partitioned: bool,
    lifetime: CookieLifetime,
}

impl CookieOptions {
    /// Returns the cookie name, including any prefix.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Returns the `Path` attribute.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// Returns the `Domain` attribute, if any.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }
    /// Returns whether `Secure` is set.
    pub fn secure(&self) -> bool {
        self.secure
    }
    /// Returns whether `HttpOnly` is set.
    pub fn http_only(&self) -> bool {
        self.http_only
    }
    /// Returns the `SameSite` attribute.
    pub fn same_site(&self) -> SameSite {
        self.same_site
    }
    /// Returns whether `Partitioned` is set.
    pub fn partitioned(&self) -> bool {
        self.partitioned
    }
    /// Returns the default cookie lifetime.
    pub fn lifetime(&self) -> CookieLifetime {
        self.lifetime
    }
    /// Returns the name prefix, if the name carries one.
    pub fn prefix(&self) -> Option<CookiePrefix> {
        if self.name.starts_with("__Host-") {
            Some(CookiePrefix::Host)
        } else if self.name.starts_with("__Secure-") {
            Some(CookiePrefix::Secure)
        } else {
            None
        }
    }
}

/// Session binding settings. Binding is off by default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Binding {
    /// Bind to the client IP address.
    pub ip: bool,
    /// Bind to the normalised User-Agent (product names and major versions).
    pub user_agent: bool,
    /// The action taken on a mismatch.
    pub policy: BindingPolicy,
    /// Prefix length IPv4 addresses are masked to before comparison
    /// (default 32: the exact address; 24 tolerates moves within a /24).
    pub ipv4_prefix: u8,
    /// Prefix length IPv6 addresses are masked to (default 128).
    pub ipv6_prefix: u8,
}

impl Default for Binding {
    fn default() -> Self {
        Self {
            ip: false,
            user_agent: false,
            policy: BindingPolicy::Detect,
            ipv4_prefix: 32,
            ipv6_prefix: 128,
        }
    }
}

impl Binding {
    /// Returns true when any binding is enabled.
    pub fn is_enabled(&self) -> bool {
        self.ip || self.user_agent
    }
}

/// An invalid configuration. Each variant names the field and the fix.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No secret was given.
    #[error("`secret` is missing: pass at least 32 random bytes, for example from an environment variable filled by `openssl rand -base64 48`")]
    MissingSecret,
    /// A secret is too short.
    #[error("`secret` is invalid: {0}")]
    Secret(#[from] SecretError),
    /// The cookie name is not an RFC 6265 token.
    #[error(
        "`cookie_name` {name:?} is invalid: {reason}; use letters, digits and `-_.!#$%&'*+^`|~`"
    )]
    InvalidCookieName {
        /// The rejected name.
        name: String,
        /// The rule the name breaks.
        reason: &'static str,
    },
    /// `SameSite=None` without `Secure`.
    #[error("`same_site` is None but `secure` is false: browsers reject such cookies; enable `secure` or use SameSite Lax")]
    SameSiteNoneWithoutSecure,
    /// A `__Host-` cookie with a Domain.
    #[error(
        "`cookie_name` starts with `__Host-` but `domain` is set: remove the domain or the prefix"
    )]
    HostPrefixWithDomain,
    /// A `__Host-` cookie with a Path other than `/`.
    #[error("`cookie_name` starts with `__Host-` but `path` is {0:?}: use path \"/\" or drop the prefix")]
    HostPrefixWithPath(String),
    /// A prefixed cookie without `Secure`.
    #[error(
        "`cookie_name` starts with `{0}` but `secure` is false: enable `secure` or drop the prefix"
    )]
    PrefixWithoutSecure(&'static str),
    /// A preset meant for HTTPS with `Secure` turned off.
    #[error("`secure` is false in the `{0}` preset: production cookies must be Secure; use the development preset for plain-HTTP localhost")]
    InsecureInProduction(&'static str),
    /// A duration that must be positive is zero or negative.
    #[error("`{field}` must be positive, got {value}")]
    NonPositiveDuration {
        /// The option name.
        field: &'static str,
        /// The rejected value.
        value: Duration,
    },
    /// The refresh interval is not shorter than the idle timeout.
    #[error("`refresh_interval` ({refresh}) must be shorter than `idle_timeout` ({idle}), or sessions expire before they are refreshed")]
    RefreshNotShorterThanIdle {
        /// The refresh interval.
        refresh: Duration,
        /// The idle timeout.
        idle: Duration,
    },
    /// A path that is not an absolute cookie path.
    #[error(
        "`path` {0:?} is invalid: it must start with `/` and contain no `;` or control characters"
    )]
    InvalidPath(String),
    /// A domain with characters not allowed in a cookie attribute.
    #[error(
        "`domain` {0:?} is invalid: use a host name such as `example.test`, without port or scheme"
    )]
    InvalidDomain(String),
    /// A prefix length larger than the address.
    #[error("`{field}` is {value} but must be at most {max}")]
    InvalidPrefixLength {
        /// The option name.
        field: &'static str,
        /// The rejected value.
        value: u8,
        /// The largest valid value.
        max: u8,
    },
    /// A cap that cannot hold any record.
    #[error("`max_record_bytes` must be at least 1024, got {0}")]
    RecordCapTooSmall(usize),
    /// The renewal grace is not shorter than the renewal interval.
    #[error("`renewal_grace` ({grace}) must be shorter than `renewal_interval` ({interval}), or a renewed session could be renewed again before its old id ends")]
    RenewalGraceNotShorter {
        /// The grace window.
        grace: Duration,
        /// The renewal interval.
        interval: Duration,
    },
}

/// A validated session configuration, cheap to clone.
///
/// Build one with [`SessionConfig::builder`] or a preset. All keys are
/// derived when it is built.
#[derive(Clone)]
pub struct SessionConfig {
    inner: Arc<Inner>,
}

struct Inner {
    keys: KeyRing,
    cookie: CookieOptions,
    idle_timeout: Option<Duration>,
    absolute_lifetime: Option<Duration>,
    refresh_interval: Duration,
    renewal_interval: Option<Duration>,
    renewal_grace: Duration,
    binding: Binding,
    trusted_proxies: TrustedProxies,
    codec: RecordCodec,
    encrypt_at_rest: bool,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    events: Arc<dyn SessionEvents>,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("SessionConfig")
            .field("keys", &inner.keys)
            .field("cookie", &inner.cookie)
            .field("idle_timeout", &inner.idle_timeout)
            .field("absolute_lifetime", &inner.absolute_lifetime)
            .field("refresh_interval", &inner.refresh_interval)
            .field("renewal_interval", &inner.renewal_interval)
            .field("renewal_grace", &inner.renewal_grace)
            .field("binding", &inner.binding)
            .field("trusted_proxies", &inner.trusted_proxies)
            .field("codec", &inner.codec)
            .field("clock", &inner.clock)
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    /// Starts a configuration with the library defaults: cookie `id`,
    /// `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`, browser-session
    /// cookie, idle timeout 30 minutes, no absolute lifetime, refresh
    /// interval 1 minute, no binding. A secret is still required.
    pub fn builder() -> SessionConfigBuilder {
        SessionConfigBuilder::default()
    }

    /// Preset for local development over plain HTTP: idle 30 minutes, and
    /// `Secure` off so that browsers keep the cookie on `http://localhost`.
    pub fn development(secret: impl AsRef<[u8]>) -> SessionConfigBuilder {
        let mut builder = Self::builder().secret(secret).secure(false);
        builder.preset = Some("development");
        builder
    }

    /// Preset for production over HTTPS: idle 1 hour, absolute 24 hours,
    /// `Secure` required, encryption at rest for server-side stores.
    pub fn production(secret: impl AsRef<[u8]>) -> SessionConfigBuilder {
        let mut builder = Self::builder()
            .secret(secret)
            .idle_timeout(Some(Duration::hours(1)))
            .absolute_lifetime(Some(Duration::hours(24)))
            .encrypt_at_rest(true);
        builder.preset = Some("production");
        builder.production = true;
        builder
    }

    /// Preset for sensitive applications: idle 15 minutes, absolute 8 hours,
    /// a new session id every 10 minutes, `SameSite=Strict`, and strict
    /// binding to IP and User-Agent.
    pub fn high_security(secret: impl AsRef<[u8]>) -> SessionConfigBuilder {
        let mut builder = Self::builder()
            .secret(secret)
            .idle_timeout(Some(Duration::minutes(15)))
            .absolute_lifetime(Some(Duration::hours(8)))
            .renewal_interval(Some(Duration::minutes(10)))
            .same_site(SameSite::Strict)
            .bind_ip(true)
            .bind_user_agent(true)
            .binding_policy(BindingPolicy::Strict)
            .encrypt_at_rest(true);
        builder.preset = Some("high_security");
        builder.production = true;
        builder
    }

    /// Preset for tests: idle 5 minutes, `Secure` off, refresh interval
    /// 10 seconds.
    pub fn testing(secret: impl AsRef<[u8]>) -> SessionConfigBuilder {
        let mut builder = Self::builder()
            .secret(secret)
            .secure(false)
            .idle_timeout(Some(Duration::minutes(5)))
            .refresh_interval(Duration::seconds(10));
        builder.preset = Some("testing");
        builder
    }

    /// Preset for several app nodes sharing one store: idle 1 hour, absolute
    /// 24 hours, `Secure` required.
    pub fn clustered(secret: impl AsRef<[u8]>) -> SessionConfigBuilder {
        let mut builder = Self::production(secret);
        builder.preset = Some("clustered");
        builder
    }

    /// Returns the key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }
    /// Returns the cookie attributes.
    pub fn cookie(&self) -> &CookieOptions {
        &self.inner.cookie
    }
    /// Returns the idle timeout.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.inner.idle_timeout
    }
    /// Returns the absolute lifetime.
    pub fn absolute_lifetime(&self) -> Option<Duration> {
        self.inner.absolute_lifetime
    }
    /// Returns the sliding refresh interval.
    pub fn refresh_interval(&self) -> Duration {
        self.inner.refresh_interval
    }
    /// Returns how long one session id is used before it is renewed, if it is.
    pub fn renewal_interval(&self) -> Option<Duration> {
        self.inner.renewal_interval
    }
    /// Returns how long a renewed session's old id still leads to it.
    pub fn renewal_grace(&self) -> Duration {
        self.inner.renewal_grace
    }
    /// Returns the binding settings.
    pub fn binding(&self) -> &Binding {
        &self.inner.binding
    }
    /// Returns the trusted proxies.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.inner.trusted_proxies
    }
    /// Returns the record codec.
    pub fn codec(&self) -> &RecordCodec {
        &self.inner.codec
    }
    /// Returns true when server-side stores built from this configuration
    /// should seal stored values.
    pub fn encrypt_at_rest(&self) -> bool {
        self.inner.encrypt_at_rest
    }
    /// Returns the clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }
    /// Returns the id generator.
    pub fn ids(&self) -> &dyn IdGenerator {
        &*self.inner.ids
    }
    /// Returns the events hook.
    pub fn events(&self) -> &dyn SessionEvents {
        &*self.inner.events
    }
    /// Returns a shared handle to the clock, for stores.
    pub fn shared_clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// Computes the binding fingerprint of `client`, or `None` when binding
    /// is off.
    pub fn fingerprint(&self, client: &ClientInfo) -> Option<Fingerprint> {
        let binding = &self.inner.binding;
        binding
            .is_enabled()
            .then(|| Fingerprint::compute(&self.inner.keys, binding, client))
    }
}

/// Builder of [`SessionConfig`]. Every setter states its default; invalid
/// combinations are reported by [`SessionConfigBuilder::build`].
#[must_use]
pub struct SessionConfigBuilder {
    secret: Option<Vec<u8>>,
    retired: Vec<Vec<u8>>,
    passphrase: Option<(Vec<u8>, NonZeroU32)>,
    cookie_name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    partitioned: bool,
    lifetime: CookieLifetime,
    idle_timeout: Option<Duration>,
    absolute_lifetime: Option<Duration>,
    refresh_interval: Duration,
    renewal_interval: Option<Duration>,
    renewal_grace: Duration,
    binding: Binding,
    trusted_proxies: Vec<IpNet>,
    compression_threshold: Option<usize>,
    max_record_bytes: usize,
    encrypt_at_rest: bool,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    events: Arc<dyn SessionEvents>,
    preset: Option<&'static str>,
    production: bool,
}

impl Default for SessionConfigBuilder {
    fn default() -> Self {
        Self {
            secret: None,
            retired: Vec::new(),
            passphrase: None,
            cookie_name: "id".to_owned(),
            path: "/".to_owned(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            partitioned: false,
            lifetime: CookieLifetime::BrowserSession,
            idle_timeout: Some(Duration::minutes(30)),
            absolute_lifetime: None,
            refresh_interval: Duration::minutes(1),
            renewal_interval: None,
            renewal_grace: Duration::seconds(30),
            binding: Binding::default(),
            trusted_proxies: Vec::new(),
            compression_threshold: Some(1024),
            max_record_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            encrypt_at_rest: false,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIdGenerator),
            events: Arc::new(NoEvents),
            preset: None,
            production: false,
        }
    }
}

impl fmt::Debug for SessionConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfigBuilder")
            .field("preset", &self.preset)
            .field("cookie_name", &self.cookie_name)
            .finish_non_exhaustive()
    }
}

impl SessionConfigBuilder {
    /// Sets the current secret: at least 32 random bytes. Required; there
    /// is no default.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Adds a retired secret: values signed or sealed with it are still
    /// accepted and re-issued under the current secret. None by default.
    pub fn retired_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.retired.push(secret.as_ref().to_vec());
        self
    }

    /// Treats the secret as a passphrase and stretches it once, at build
    /// time, with PBKDF2-HMAC-SHA256 over `salt` and `iterations`. Off by
    /// default, for random secrets need no stretching.
    pub fn passphrase_stretching(mut self, salt: impl AsRef<[u8]>, iterations: NonZeroU32) -> Self {
        self.passphrase = Some((salt.as_ref().to_vec(), iterations));
        self
    }

    /// Sets the cookie name (default `id`). A `__Host-` or `__Secure-`
    /// prefix is validated.
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Sets the `Path` attribute (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets the `Domain` attribute (default none: a host-only cookie).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets `Secure` (default on).
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets `HttpOnly` (default on).
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// Sets `SameSite` (default Lax).
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Sets `Partitioned` (CHIPS; default off).
    pub fn partitioned(mut self, partitioned: bool) -> Self {
        self.partitioned = partitioned;
        self
    }

    /// Sets whether cookies are browser-session or persistent (default
    /// browser-session).
    pub fn cookie_lifetime(mut self, lifetime: CookieLifetime) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Sets the idle timeout (default 30 minutes); `None` disables it.
    pub fn idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Sets the absolute lifetime from creation (default none).
    pub fn absolute_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.absolute_lifetime = lifetime;
        self
    }

    /// Sets how long one session id may be used before a request replaces
    /// it with a new one (default `None`: the id changes only at login and
    /// on explicit regeneration). Renewal bounds how long a stolen id stays
    /// useful, whatever the session's own lifetime. The old id keeps leading
    /// to the session for [`SessionConfigBuilder::renewal_grace`], so
    /// requests sent before the new cookie arrived still work. Server-side
    /// stores only: the cookie store ignores it.
    pub fn renewal_interval(mut self, interval: Option<Duration>) -> Self {
        self.renewal_interval = interval;
        self
    }

    /// Sets how long a renewed session's old id still leads to the session
    /// (default 30 seconds). It must be shorter than the renewal interval.
    pub fn renewal_grace(mut self, grace: Duration) -> Self {
        self.renewal_grace = grace;
        self
    }

    /// Sets how long after the last recorded activity a read-only request
    /// slides the idle deadline (default 1 minute). Shorter means more store
    /// writes; it must be shorter than the idle timeout.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Binds sessions to the client IP (default off).
    pub fn bind_ip(mut self, enabled: bool) -> Self {
        self.binding.ip = enabled;
        self
    }

    /// Binds sessions to the normalised User-Agent (default off).
    pub fn bind_user_agent(mut self, enabled: bool) -> Self {
        self.binding.user_agent = enabled;
        self
    }

    /// Sets what a binding mismatch does (default detect).
    pub fn binding_policy(mut self, policy: BindingPolicy) -> Self {
        self.binding.policy = policy;
        self
    }

    /// Masks IP addresses to these prefix lengths before binding (default
    /// 32 and 128: exact addresses).
    pub fn binding_ip_prefix(mut self, ipv4: u8, ipv6: u8) -> Self {
        self.binding.ipv4_prefix = ipv4;
        self.binding.ipv6_prefix = ipv6;
        self
    }

    /// Trusts `X-Forwarded-For` from these proxy networks (default none:
    /// the client IP is the socket peer).
    pub fn trusted_proxies(mut self, networks: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted_proxies = networks.into_iter().collect();
        self
    }

    /// Compresses encoded records larger than this many bytes (default 1024);
    /// `None` never compresses.
    pub fn compression_threshold(mut self, threshold: Option<usize>) -> Self {
        self.compression_threshold = threshold;
        self
    }

    /// Caps the decoded size of a record (default 1 MiB), so a small stored
    /// value can never expand without limit.
    pub fn max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max;
        self
    }

    /// Asks server-side stores built with this configuration (such as
    /// `RedisStore` through `with_config`) to seal stored values with
    /// AES-256-GCM. Off by default; on in the `production`,
    /// `high_security` and `clustered` presets.
    pub fn encrypt_at_rest(mut self, enabled: bool) -> Self {
        self.encrypt_at_rest = enabled;
        self
    }

    /// Sets the clock that decides every expiry (default the system clock).
    /// Tests pass a `ManualClock`, and give the same clock to the store
    /// (`MemoryStoreBuilder::clock`), which decides when it may drop or
    /// purge entries.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the id generator (default the OS CSPRNG).
    pub fn id_generator(mut self, ids: impl IdGenerator) -> Self {
        self.ids = Arc::new(ids);
        self
    }

    /// Sets the events hook (default none).
    pub fn events(mut self, events: impl SessionEvents) -> Self {
        self.events = Arc::new(events);
        self
    }

    /// Validates the options and derives the keys.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid option and the fix.
    pub fn build(self) -> Result<SessionConfig, ConfigError> {
        let secret = self.secret.as_deref().ok_or(ConfigError::MissingSecret)?;
        let secret = Secret::try_from_bytes(secret)?;
        let retired = self
            .retired
            .iter()
            .map(|bytes| Secret::try_from_bytes(bytes))
            .collect::<Result<Vec<_>, _>>()?;

        validate_cookie_name(&self.cookie_name)?;
        validate_path(&self.path)?;
        if let Some(domain) = &self.domain {
            validate_domain(domain)?;
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneWithoutSecure);
        }
        if self.cookie_name.starts_with("__Host-") {
            if !self.secure {
                return Err(ConfigError::PrefixWithoutSecure("__Host-"));
            }
            if self.domain.is_some() {
                return Err(ConfigError::HostPrefixWithDomain);
            }
            if self.path != "/" {
                return Err(ConfigError::HostPrefixWithPath(self.path.clone()));
            }
        }
        if self.cookie_name.starts_with("__Secure-") && !self.secure {
            return Err(ConfigError::PrefixWithoutSecure("__Secure-"));
        }
        if self.production && !self.secure {
            return Err(ConfigError::InsecureInProduction(
                self.preset.unwrap_or("production"),
            ));
        }

        positive("idle_timeout", self.idle_timeout)?;
        positive("absolute_lifetime", self.absolute_lifetime)?;
        positive("refresh_interval", Some(self.refresh_interval))?;
        positive("renewal_interval", self.renewal_interval)?;
        positive("renewal_grace", Some(self.renewal_grace))?;
        if let Some(interval) = self.renewal_interval {
            if self.renewal_grace >= interval {
                return Err(ConfigError::RenewalGraceNotShorter {
                    grace: self.renewal_grace,
                    interval,
                });
            }
        }
        if let Some(idle) = self.idle_timeout {
            if self.refresh_interval >= idle {
                return Err(ConfigError::RefreshNotShorterThanIdle {
                    refresh: self.refresh_interval,
                    idle,
                });
            }
        }
        if self.binding.ipv4_prefix > 32 {
            return Err(ConfigError::InvalidPrefixLength {
                field: "binding_ip_prefix (IPv4)",
                value: self.binding.ipv4_prefix,
                max: 32,
            });
        }
        if self.binding.ipv6_prefix > 128 {
            return Err(ConfigError::InvalidPrefixLength {
                field: "binding_ip_prefix (IPv6)",
                value: self.binding.ipv6_prefix,
                max: 128,
            });
        }
        if self.max_record_bytes < 1024 {
            return Err(ConfigError::RecordCapTooSmall(self.max_record_bytes));
        }

        let mut keys = match &self.passphrase {
            Some((salt, iterations)) => KeyRing::from_passphrase(&secret, salt, *iterations),
            None => KeyRing::new(secret),
        };
        for old in retired {
            keys = match &self.passphrase {
                Some((salt, iterations)) => {
                    let stretched = KeyRing::from_passphrase(&old, salt, *iterations);
                    keys.with_ring_keys(stretched)
                }
                None => keys.with_retired(old),
            };
        }

        Ok(SessionConfig {
            inner: Arc::new(Inner {
                keys,
                cookie: CookieOptions {
                    name: self.cookie_name,
                    path: self.path,
                    domain: self.domain,
                    secure: self.secure,
                    http_only: self.http_only,
                    same_site: self.same_site,
                    partitioned: self.partitioned,
                    lifetime: self.lifetime,
                },
                idle_timeout: self.idle_timeout,
                absolute_lifetime: self.absolute_lifetime,
                refresh_interval: self.refresh_interval,
                renewal_interval: self.renewal_interval,
                renewal_grace: self.renewal_grace,
                binding: self.binding,
                trusted_proxies: TrustedProxies::new(self.trusted_proxies),
                codec: RecordCodec::new(self.compression_threshold, self.max_record_bytes),
                encrypt_at_rest: self.encrypt_at_rest,
                clock: self.clock,
                ids: self.ids,
                events: self.events,
            }),
        })
    }
}

fn positive(field: &'static str, value: Option<Duration>) -> Result<(), ConfigError> {
    match value {
        Some(value) if value <= Duration::ZERO => {
            Err(ConfigError::NonPositiveDuration { field, value })
        }
        _ => Ok(()),
    }
}

/// Checks that `name` is an RFC 6265 cookie-name, which is an RFC 2616 token.
fn validate_cookie_name(name: &str) -> Result<(), ConfigError> {
    let invalid = |reason| ConfigError::InvalidCookieName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    for byte in name.bytes() {
        if byte.is_ascii_control() || !byte.is_ascii() {
            return Err(invalid("it contains a control or non-ASCII character"));
        }
        if byte == b' ' || byte == b'\t' {
            return Err(invalid("it contains whitespace"));
        }
        if b"()<>@,;:\\\"/[]?={}".contains(&byte) {
            return Err(invalid("it contains a separator character"));
        }
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') || path.bytes().any(|b| b == b';' || b.is_ascii_control()) {
        return Err(ConfigError::InvalidPath(path.to_owned()));
    }
    Ok(())
}

fn validate_domain(domain: &str) -> Result<(), ConfigError> {
    let valid = !domain.is_empty()
        && domain
            .trim_start_matches('.')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::InvalidDomain(domain.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_are_secure() {
        let config = SessionConfig::builder().secret(SECRET).build().unwrap();
        let cookie = config.cookie();
        assert_eq!(cookie.name(), "id");
        assert_eq!(cookie.path(), "/");
        assert_eq!(cookie.domain(), None);
        assert!(cookie.secure());
        assert!(cookie.http_only());
        assert_eq!(cookie.same_site(), SameSite::Lax);
        assert_eq!(cookie.lifetime(), CookieLifetime::BrowserSession);
        assert_eq!(config.idle_timeout(), Some(Duration::minutes(30)));
    }

    #[test]
    fn missing_or_short_secret_is_an_error() {
        assert_eq!(
            SessionConfig::builder().build().unwrap_err(),
            ConfigError::MissingSecret
        );
        assert_eq!(
            SessionConfig::builder()
                .secret(b"short")
                .build()
                .unwrap_err(),
            ConfigError::Secret(SecretError::TooShort { actual: 5 })
        );
        assert!(matches!(
            SessionConfig::builder()
                .secret(SECRET)
                .retired_secret(b"x")
                .build(),
            Err(ConfigError::Secret(_))
        ));
    }

    #[test]
    fn same_site_none_requires_secure() {
        let err = SessionConfig::builder()
            .secret(SECRET)
            .same_site(SameSite::None)
            .secure(false)
            .build()
            .unwrap_err();
        assert_eq!(err, ConfigError::SameSiteNoneWithoutSecure);
        assert!(err.to_string().contains("enable `secure`"), "{err}");
    }

    #[test]
    fn host_prefix_rules_are_enforced() {
        let base = || {
            SessionConfig::builder()
                .secret(SECRET)
                .cookie_name("__Host-id")
        };
        assert_eq!(
            base().domain("example.test").build().unwrap_err(),
            ConfigError::HostPrefixWithDomain
        );
        assert_eq!(
            base().secure(false).build().unwrap_err(),
            ConfigError::PrefixWithoutSecure("__Host-")
        );
        assert_eq!(
            base().path("/app").build().unwrap_err(),
            ConfigError::HostPrefixWithPath("/app".into())
        );
        assert!(base().build().is_ok());
        assert_eq!(
            SessionConfig::builder()
                .secret(SECRET)
                .cookie_name("__Secure-id")
                .secure(false)
                .build()
                .unwrap_err(),
            ConfigError::PrefixWithoutSecure("__Secure-")
        );
    }

    #[test]
    fn cookie_names_must_be_tokens() {
        for bad in ["", "a b", "a;b", "a=b", "sess\u{e9}", "a\tb", "(x)"] {
            let err = SessionConfig::builder()
                .secret(SECRET)
                .cookie_name(bad)
                .build()
                .unwrap_err();
            assert!(
                matches!(err, ConfigError::InvalidCookieName { .. }),
                "{bad:?}: {err}"
            );
        }
        assert!(SessionConfig::builder()
            .secret(SECRET)
            .cookie_name("my_app.sid")
            .build()
            .is_ok());
    }

    #[test]
    fn durations_must_be_positive() {
        let err = SessionConfig::builder()
            .secret(SECRET)
            .idle_timeout(Some(Duration::ZERO))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            ConfigError::NonPositiveDuration {
                field: "idle_timeout",
                value: Duration::ZERO
            }
        );
        let err = SessionConfig::builder()
            .secret(SECRET)
            .absolute_lifetime(Some(Duration::seconds(-1)))
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::NonPositiveDuration {
                field: "absolute_lifetime",
                ..
            }
        ));
    }

    #[test]
    fn refresh_must_be_shorter_than_idle() {
        let err = SessionConfig::builder()
            .secret(SECRET)
            .idle_timeout(Some(Duration::seconds(30)))
            .refresh_interval(Duration::seconds(30))
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::RefreshNotShorterThanIdle { .. }));
    }

    #[test]
    fn renewal_grace_must_be_shorter_than_interval() {
        let err = SessionConfig::builder()
            .secret(SECRET)
            .renewal_interval(Some(Duration::seconds(30)))
            .renewal_grace(Duration::seconds(30))
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::RenewalGraceNotShorter { .. }));

        let err = SessionConfig::builder()
            .secret(SECRET)
            .renewal_interval(Some(Duration::ZERO))
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::NonPositiveDuration {
                field: "renewal_interval",
                ..
            }
        ));

        let config = SessionConfig::high_security(SECRET).build().unwrap();
        assert_eq!(config.renewal_interval(), Some(Duration::minutes(10)));
        assert_eq!(config.renewal_grace(), Duration::seconds(30));
        let config = SessionConfig::production(SECRET).build().unwrap();
        assert_eq!(config.renewal_interval(), None);
    }

    #[test]
    fn invalid_path_and_domain_are_rejected() {
        assert!(matches!(
            SessionConfig::builder().secret(SECRET).path("app").build(),
            Err(ConfigError::InvalidPath(_))
        ));
        assert!(matches!(
            SessionConfig::builder()
                .secret(SECRET)
                .domain("example.test;x")
                .build(),
            Err(ConfigError::InvalidDomain(_))
        ));
    }

    #[test]
    fn presets_carry_their_intent() {
        let dev = SessionConfig::development(SECRET).build().unwrap();
        assert_eq!(dev.idle_timeout(), Some(Duration::minutes(30)));
        assert!(!dev.cookie().secure());

        let prod = SessionConfig::production(SECRET).build().unwrap();
        assert_eq!(prod.idle_timeout(), Some(Duration::hours(1)));
        assert!(prod.cookie().secure());

        let high = SessionConfig::high_security(SECRET).build().unwrap();
        assert_eq!(high.idle_timeout(), Some(Duration::minutes(15)));
        assert!(high.binding().ip);
        assert!(high.binding().user_agent);
        assert_eq!(high.binding().policy, BindingPolicy::Strict);

        let testing = SessionConfig::testing(SECRET).build().unwrap();
        assert_eq!(testing.idle_timeout(), Some(Duration::minutes(5)));

        let clustered = SessionConfig::clustered(SECRET).build().unwrap();
        assert_eq!(clustered.idle_timeout(), Some(Duration::hours(1)));

        assert!(prod.encrypt_at_rest());
        assert!(high.encrypt_at_rest());
        assert!(clustered.encrypt_at_rest());
        assert!(!dev.encrypt_at_rest());
        assert!(!testing.encrypt_at_rest());
    }

    #[test]
    fn presets_still_require_a_valid_secret() {
        assert!(matches!(
            SessionConfig::production(b"short").build(),
            Err(ConfigError::Secret(_))
        ));
        assert!(matches!(
            SessionConfig::development(b"").build(),
            Err(ConfigError::Secret(_))
        ));
    }

    #[test]
    fn production_presets_refuse_insecure_cookies() {
        assert_eq!(
            SessionConfig::production(SECRET)
                .secure(false)
                .build()
                .unwrap_err(),
            ConfigError::InsecureInProduction("production")
        );
        assert_eq!(
            SessionConfig::high_security(SECRET)
                .secure(false)
                .build()
                .unwrap_err(),
            ConfigError::InsecureInProduction("high_security")
        );
    }

    #[test]
    fn prefix_lengths_and_record_cap_are_checked() {
        assert!(matches!(
            SessionConfig::builder()
                .secret(SECRET)
                .binding_ip_prefix(33, 128)
                .build(),
            Err(ConfigError::InvalidPrefixLength { max: 32, .. })
        ));
        assert_eq!(
            SessionConfig::builder()
                .secret(SECRET)
                .max_record_bytes(10)
                .build()
                .unwrap_err(),
            ConfigError::RecordCapTooSmall(10)
        );
    }
}
