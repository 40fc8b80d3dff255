//! Counting of invalid or unknown session cookies per client, to detect
//! session id guessing and, when asked, to block it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use time::OffsetDateTime;

/// A limit on the invalid or unknown session cookies that one client may
/// send within a window.
///
/// A cookie counts when it leads to no session: a forged or damaged value,
/// an id the store does not know (expired or deleted sessions included), or
/// a cookie-store token that does not open. Clients are distinguished by IP
/// address: the peer address from `ConnectInfo`, or the address the
/// configured trusted proxies forwarded.
///
/// When a client goes over the limit the layer logs one warning, counts
/// `session_invalid_cookie_floods_total` and sends a
/// `SessionEventKind::InvalidCookieFlood` event, once per window. With
/// [`InvalidCookieLimit::block`] it also responds with 429 Too Many Requests, with
/// `Retry-After`, to every request of that client that carries a session
/// cookie, until the window ends. Requests without a session cookie, and
/// routes that never extract the session, are not affected.
///
/// Without `ConnectInfo` the layer cannot tell clients apart, so it counts
/// nothing and says so once in the log. Serve the app with
/// `into_make_service_with_connect_info::<SocketAddr>()` to use the limit.
///
/// ```
/// use std::time::Duration;
/// use session_axum::{InvalidCookieLimit, MemoryStore, Session, SessionConfig, SessionLayer};
///
/// #[derive(Session, Default, Clone, serde::Serialize, serde::Deserialize)]
/// struct UserSession {
///     #[session(identity)]
///     user: Option<String>,
/// }
///
/// let config = SessionConfig::development([5u8; 32]).build().unwrap();
/// let limit = InvalidCookieLimit::new(20, Duration::from_secs(60)).block(true);
/// let layer = SessionLayer::<UserSession>::new(MemoryStore::default(), config)
///     .invalid_cookie_limit(Some(limit));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCookieLimit {
    max_failures: u32,
    window: Duration,
    block: bool,
    max_clients: u64,
}

impl Default for InvalidCookieLimit {
    /// 20 invalid or unknown cookies per client per minute, warning only.
    fn default() -> Self {
        Self::new(20, Duration::from_secs(60))
    }
}

impl InvalidCookieLimit {
    /// Tolerates `max_failures` invalid or unknown cookies per client within
    /// `window`, counted from the client's first failure; the next one goes
    /// over the limit. Warns only, until [`InvalidCookieLimit::block`].
    ///
    /// # Panics
    ///
    /// When `max_failures` is 0 or `window` is shorter than a second.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        assert!(
            max_failures > 0,
            "InvalidCookieLimit: max_failures must be at least 1"
        );
        assert!(
            window >= Duration::from_secs(1),
            "InvalidCookieLimit: the window must be at least one second"
        );
        Self {
            max_failures,
            window,
            block: false,
            max_clients: 100_000,
        }
    }

    /// Rejects requests of a client over the limit with 429 until its window ends
    /// (default false: warn only).
    pub fn block(mut self, block: bool) -> Self {
        self.block = block;
        self
    }

    /// Sets how many clients are tracked at once (default 100 000). The
    /// least recently seen client is forgotten first, so the memory stays
    /// bounded when many addresses send invalid cookies.
    pub fn max_clients(mut self, max_clients: u64) -> Self {
        self.max_clients = max_clients;
        self
    }

    /// Returns the number of failures tolerated per window.
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// Returns the window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Returns true when requests of a client over the limit get 429.
    pub fn blocks(&self) -> bool {
        self.block
    }
}

/// The failures of one client in its current window.
#[derive(Debug)]
struct ClientWindow {
    started: OffsetDateTime,
    failures: u32,
}

/// The outcome of recording a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Still within the limit, or already reported in this window.
    Counted,
    /// This failure went over the limit: report it.
    WentOver { failures: u32 },
}

/// The per-client counters of one layer.
pub(crate) struct InvalidCookieTracker {
    limit: InvalidCookieLimit,
    clients: Cache<IpAddr, Arc<Mutex<ClientWindow>>>,
    /// Set once the log reported that requests carry no client address.
    reported_missing_address: AtomicBool,
}

impl InvalidCookieTracker {
    pub(crate) fn new(limit: InvalidCookieLimit) -> Self {
        // Entries idle for a whole window hold nothing that still counts,
        // so moka may drop them; the window itself runs on the layer's clock.
        let clients = Cache::builder()
            .max_capacity(limit.max_clients)
            .time_to_idle(limit.window)
            .build();
        Self {
            limit,
            clients,
            reported_missing_address: AtomicBool::new(false),
        }
    }

    pub(crate) fn limit(&self) -> &InvalidCookieLimit {
        &self.limit
    }

    /// Returns how long `client` stays blocked, if it is.
    pub(crate) fn blocked_for(
        &self,
        client: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Option<Duration> {
        if !self.limit.block {
            return None;
        }
        let window = self.clients.get(&client?)?;
        let window = window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ends = window.started + self.limit.window;
        if window.failures > self.limit.max_failures && now < ends {
            Some(Duration::try_from(ends - now).unwrap_or(Duration::ZERO))
        } else {
            None
        }
    }

    /// Counts one failure of `client` at `now`.
    pub(crate) fn record_failure(&self, client: Option<IpAddr>, now: OffsetDateTime) -> Recorded {
        let Some(client) = client else {
            if !self.reported_missing_address.swap(true, Ordering::Relaxed) {
                tracing::info!("invalid session cookies are not counted per client: requests carry no ConnectInfo; serve the app with into_make_service_with_connect_info::<SocketAddr>()");
            }
            return Recorded::Counted;
        };
        let entry = self.clients.get_with(client, || {
            Arc::new(Mutex::new(ClientWindow {
                started: now,
                failures: 0,
            }))
        });
        let mut window = entry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if now >= window.started + self.limit.window {
            window.started = now;
            window.failures = 0;
        }
        window.failures = window.failures.saturating_add(1);
        if window.failures == self.limit.max_failures + 1 {
            Recorded::WentOver {
                failures: window.failures,
            }
        } else {
            Recorded::Counted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const CLIENT: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));

    fn start() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000)
    }

    #[test]
    fn limit_is_reported_once_per_window() {
        let tracker =
            InvalidCookieTracker::new(InvalidCookieLimit::new(2, Duration::from_secs(60)));
        let now = start();
        assert_eq!(tracker.record_failure(CLIENT, now), Recorded::Counted);
        assert_eq!(tracker.record_failure(CLIENT, now), Recorded::Counted);
        assert_eq!(
            tracker.record_failure(CLIENT, now),
            Recorded::WentOver { failures: 3 }
        );
        assert_eq!(tracker.record_failure(CLIENT, now), Recorded::Counted);
    }

    #[test]
    fn window_restarts_after_it_ends() {
        let tracker =
            InvalidCookieTracker::new(InvalidCookieLimit::new(1, Duration::from_secs(60)));
        let now = start();
        tracker.record_failure(CLIENT, now);
        assert!(matches!(
            tracker.record_failure(CLIENT, now),
            Recorded::WentOver { .. }
        ));

        let later = now + time::Duration::seconds(60);
        assert_eq!(tracker.record_failure(CLIENT, later), Recorded::Counted);
        assert!(matches!(
            tracker.record_failure(CLIENT, later),
            Recorded::WentOver { .. }
        ));
    }

    #[test]
    fn blocking_lasts_until_window_end() {
        let limit = InvalidCookieLimit::new(1, Duration::from_secs(60)).block(true);
        let tracker = InvalidCookieTracker::new(limit);
        let now = start();
        tracker.record_failure(CLIENT, now);
        assert_eq!(tracker.blocked_for(CLIENT, now), None, "within the limit");

        tracker.record_failure(CLIENT, now);
        let twenty_later = now + time::Duration::seconds(20);
        assert_eq!(
            tracker.blocked_for(CLIENT, twenty_later),
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            tracker.blocked_for(CLIENT, now + time::Duration::seconds(60)),
            None
        );
    }

    #[test]
    fn warn_only_limit_never_blocks() {
        let tracker =
            InvalidCookieTracker::new(InvalidCookieLimit::new(1, Duration::from_secs(60)));
        let now = start();
        for _ in 0..5 {
            tracker.record_failure(CLIENT, now);
        }
        assert_eq!(tracker.blocked_for(CLIENT, now), None);
    }

    #[test]
    fn clients_without_address_are_not_counted() {
        let limit = InvalidCookieLimit::new(1, Duration::from_secs(60)).block(true);
        let tracker = InvalidCookieTracker::new(limit);
        let now = start();
        for _ in 0..5 {
            assert_eq!(tracker.record_failure(None, now), Recorded::Counted);
        }
        assert_eq!(tracker.blocked_for(None, now), None);
    }

    #[test]
    fn other_clients_are_counted_apart() {
        let limit = InvalidCookieLimit::new(1, Duration::from_secs(60)).block(true);
        let tracker = InvalidCookieTracker::new(limit);
        let now = start();
        tracker.record_failure(CLIENT, now);
        tracker.record_failure(CLIENT, now);
        let other = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8)));
        assert!(tracker.blocked_for(CLIENT, now).is_some());
        assert_eq!(tracker.blocked_for(other, now), None);
    }

    #[test]
    #[should_panic(expected = "max_failures must be at least 1")]
    fn zero_failures_is_rejected() {
        let _ = InvalidCookieLimit::new(0, Duration::from_secs(60));
    }
}
