//! Timeouts, retries and a circuit breaker around any [`SessionStore`].
//!
//! [`ResilientStore`] wraps a store and, for every operation:
//!
//! 1. fails fast with [`StoreError::CircuitOpen`] while the circuit breaker
//!    is open;
//! 2. bounds each attempt by a timeout, reported as [`StoreError::Timeout`];
//! 3. retries connection errors and timeouts of idempotent operations with
//!    jittered exponential backoff, bounded in attempts and in total time.
//!
//! The breaker counts only failures for which [`StoreError::is_transient`]
//! is true. "Not found", conflicts and other responses from the store prove
//! that the store is reachable, so they count as successes. Time is measured
//! with `tokio::time::Instant`, which is monotonic and which tests can pause.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::{CreateOutcome, SaveOutcome, SessionStore, StoreError, StoredSession};
use crate::events::{SessionEvents, StoreEvent};
use crate::SessionId;

/// The retry schedule: bounded exponential backoff with jitter.
///
/// The delay before retry `n` (the first retry is `n = 1`) is
/// `min(cap, base * factor^(n-1))`, scaled by a random factor in
/// `[1 - jitter, 1 + jitter]` and capped at `cap` again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base: Duration,
    cap: Duration,
    factor: f64,
    jitter: f64,
    max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            factor: 2.0,
            jitter: 0.1,
            max_elapsed: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Returns the delay before retry number `retry` (1 for the first retry),
    /// with `unit_jitter` in `[-1, 1]` choosing where in the jitter range the
    /// delay falls. Values outside `[-1, 1]` are clamped.
    pub fn delay(&self, retry: u32, unit_jitter: f64) -> Duration {
        let exponent = retry.saturating_sub(1).min(64) as i32;
        let cap = self.cap.as_secs_f64();
        let backoff = (self.base.as_secs_f64() * self.factor.powi(exponent)).min(cap);
        let jittered = backoff * (1.0 + self.jitter * unit_jitter.clamp(-1.0, 1.0));
        Duration::from_secs_f64(jittered.clamp(0.0, cap))
    }

    /// Returns the maximum number of attempts, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Returns the cap on the total time of one operation, attempts and
    /// backoff included.
    pub fn max_elapsed(&self) -> Duration {
        self.max_elapsed
    }
}

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls reach the store.
    Closed,
    /// Calls fail fast with [`StoreError::CircuitOpen`] until the reset
    /// timeout passes.
    Open,
    /// A limited number of probe calls reach the store; the first result
    /// decides whether the breaker closes or opens again.
    HalfOpen,
}

/// A [`SessionStore`] wrapper with per-operation timeouts, bounded retries
/// and a circuit breaker.
///
/// Only idempotent operations are retried: `load`, `touch` (it sets the same
/// expiry at the same version, so a repeat changes nothing), `delete`,
/// `list_by_identity` and `delete_by_identity`. `create` and `save` are tried
/// once, because a retry after a lost acknowledgement would report
/// `IdTaken` or `Conflict` for a write that was applied. A retried `delete`
/// or `delete_by_identity` whose first attempt was applied but not
/// acknowledged reports what the last attempt deleted, so it can report
/// `false` or a lower count.
///
/// ```
/// use std::time::Duration;
/// use session_core::{MemoryStore, ResilientStore};
///
/// let store = ResilientStore::builder(MemoryStore::default())
///     .timeout(Duration::from_millis(500))
///     .max_attempts(2)
///     .build();
/// # let _ = store;
/// ```
pub struct ResilientStore<S> {
    inner: S,
    timeout: Duration,
    retry: RetryPolicy,
    breaker: Breaker,
    events: Option<Arc<dyn SessionEvents>>,
}

impl<S: fmt::Debug> fmt::Debug for ResilientStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilientStore")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("events", &self.events.is_some())
            .finish()
    }
}

/// Builder of [`ResilientStore`].
#[must_use]
pub struct ResilientStoreBuilder<S> {
    inner: S,
    timeout: Duration,
    retry: RetryPolicy,
    failure_threshold: u32,
    reset_timeout: Duration,
    half_open_probes: u32,
    events: Option<Arc<dyn SessionEvents>>,
}

impl<S: fmt::Debug> fmt::Debug for ResilientStoreBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilientStoreBuilder")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("failure_threshold", &self.failure_threshold)
            .field("reset_timeout", &self.reset_timeout)
            .field("half_open_probes", &self.half_open_probes)
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore> ResilientStoreBuilder<S> {
    /// Sets the timeout of each attempt (default 1 s). An attempt is also cut
    /// short when the total time cap would be exceeded.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the maximum number of attempts of an idempotent operation, the
    /// first one included (default 3). Zero is raised to 1, which disables
    /// retries.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.retry.max_attempts = attempts.max(1);
        self
    }

    /// Sets the delay before the first retry (default 100 ms).
    pub fn backoff_base(mut self, base: Duration) -> Self {
        self.retry.base = base;
        self
    }

    /// Sets the maximum delay between two attempts (default 5 s).
    pub fn backoff_cap(mut self, cap: Duration) -> Self {
        self.retry.cap = cap;
        self
    }

    /// Sets the factor by which the delay grows after each retry
    /// (default 2). Values below 1, and NaN, are raised to 1.
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.retry.factor = if factor >= 1.0 { factor } else { 1.0 };
        self
    }

    /// Sets the relative jitter of each delay (default 0.1, meaning ±10 %).
    /// Clamped to `[0, 1]`; NaN is treated as 0.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.retry.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// Sets the cap on the total time of one operation, all attempts and
    /// delays included (default 5 s). No retry starts after it is reached.
    pub fn max_elapsed(mut self, max: Duration) -> Self {
        self.retry.max_elapsed = max;
        self
    }

    /// Sets how many consecutive connection errors or timeouts open the
    /// breaker (default 5). Zero is raised to 1.
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures.max(1);
        self
    }

    /// Sets how long the breaker stays open before it lets a probe through
    /// (default 30 s).
    pub fn reset_timeout(mut self, reset: Duration) -> Self {
        self.reset_timeout = reset;
        self
    }

    /// Sets how many concurrent probes the half-open breaker admits
    /// (default 1). Zero is raised to 1.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.half_open_probes = probes.max(1);
        self
    }

    /// Sets the hook that receives [`StoreEvent`]s (default none).
    pub fn events(mut self, events: Arc<dyn SessionEvents>) -> Self {
        self.events = Some(events);
        self
    }

    /// Builds the store.
    pub fn build(self) -> ResilientStore<S> {
        ResilientStore {
            inner: self.inner,
            timeout: self.timeout,
            retry: self.retry,
            breaker: Breaker {
                state: Mutex::new(State::Closed { failures: 0 }),
                failure_threshold: self.failure_threshold,
                reset_timeout: self.reset_timeout,
                half_open_probes: self.half_open_probes,
            },
            events: self.events,
        }
    }
}

impl<S: SessionStore> ResilientStore<S> {
    /// Wraps `inner` with the default settings.
    pub fn new(inner: S) -> Self {
        Self::builder(inner).build()
    }

    /// Starts a builder around `inner` with the defaults. Each attempt times
    /// out after 1 s, and up to 3 attempts are made, with backoff from 100 ms
    /// doubling up to 5 s and ±10 % jitter, within 5 s per operation. The
    /// breaker opens after 5 consecutive failures for 30 s and admits one
    /// probe when half-open. No events hook is set.
    pub fn builder(inner: S) -> ResilientStoreBuilder<S> {
        ResilientStoreBuilder {
            inner,
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            failure_threshold: 5,
            reset_timeout: Duration::from_secs(30),
            half_open_probes: 1,
            events: None,
        }
    }

    /// Returns the wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Returns the retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Returns the current state of the circuit breaker. An open breaker
    /// whose reset timeout has passed reports `Open` until the next call
    /// turns it half-open.
    pub fn breaker_state(&self) -> BreakerState {
        match *self.breaker.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Runs `call` under the breaker, the timeout and, when `idempotent`,
    /// the retry policy.
    async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        idempotent: bool,
        call: F,
    ) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let started = Instant::now();
        let max_attempts = if idempotent {
            self.retry.max_attempts
        } else {
            1
        };
        let mut attempt = 1;
        let mut last_error = None;

        loop {
            let (permit, transition) = self.breaker.admit();
            self.report(transition);
            let Some(mut permit) = permit else {
                metrics::counter!("session_breaker_rejections_total", "operation" => operation)
                    .increment(1);
                // A retry rejected by a breaker that opened meanwhile returns
                // the store's own error, which is more precise than CircuitOpen.
                return Err(last_error.unwrap_or(StoreError::CircuitOpen));
            };

            let budget = self.retry.max_elapsed.saturating_sub(started.elapsed());
            let limit = self.timeout.min(budget);
            let result = match tokio::time::timeout(limit, call()).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Timeout {
                    operation,
                    after_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                }),
            };
            let transition = permit.complete(health(&result));
            self.report(transition);

            let error = match result {
                Err(error) if error.is_transient() && attempt < max_attempts => error,
                other => return other,
            };
            let delay = self.retry.delay(attempt, rand::random::<f64>() * 2.0 - 1.0);
            if started.elapsed() + delay >= self.retry.max_elapsed {
                tracing::warn!(
                    operation,
                    attempt,
                    error = %error,
                    "session store operation failed and the retry time budget is spent"
                );
                return Err(error);
            }

            attempt += 1;
            tracing::warn!(
                operation,
                attempt,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "session store operation failed; retrying"
            );
            metrics::counter!("session_store_retries_total", "operation" => operation).increment(1);
            self.emit(StoreEvent::Retry { operation, attempt });
            last_error = Some(error);
            tokio::time::sleep(delay).await;
        }
    }

    fn report(&self, transition: Option<BreakerState>) {
        let Some(to) = transition else {
            return;
        };
        let (label, event) = match to {
            BreakerState::Open => {
                tracing::warn!(
                    failures = self.breaker.failure_threshold,
                    reset_after_ms =
                        u64::try_from(self.breaker.reset_timeout.as_millis()).unwrap_or(u64::MAX),
                    "session store circuit breaker opened; calls fail fast until the reset timeout passes"
                );
                ("open", StoreEvent::BreakerOpened)
            }
            BreakerState::HalfOpen => {
                tracing::info!("session store circuit breaker is half-open; probing the store");
                ("half_open", StoreEvent::BreakerHalfOpen)
            }
            BreakerState::Closed => {
                tracing::info!("session store circuit breaker closed after a successful probe");
                ("closed", StoreEvent::BreakerClosed)
            }
        };
        metrics::counter!("session_breaker_transitions_total", "to" => label).increment(1);
        self.emit(event);
    }

    fn emit(&self, event: StoreEvent) {
        if let Some(events) = &self.events {
            events.on_store_event(&event);
        }
    }
}

/// The health of the store as one attempt shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// The store responded, whatever the response.
    Reachable,
    /// A connection error or a timeout.
    Failing,
    /// No information about the store, such as an open breaker of a nested
    /// wrapper.
    Unknown,
}

fn health<T>(result: &Result<T, StoreError>) -> Health {
    match result {
        Ok(_) => Health::Reachable,
        Err(error) if error.is_transient() => Health::Failing,
        Err(StoreError::CircuitOpen) => Health::Unknown,
        Err(_) => Health::Reachable,
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probes_in_flight: u32 },
}

#[derive(Debug)]
struct Breaker {
    state: Mutex<State>,
    failure_threshold: u32,
    reset_timeout: Duration,
    half_open_probes: u32,
}

impl Breaker {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides whether a call may reach the store, and returns the state the
    /// breaker moved to, if it moved.
    fn admit(&self) -> (Option<Permit<'_>>, Option<BreakerState>) {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => (Some(Permit::new(self, false)), None),
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen {
                    probes_in_flight: 1,
                };
                (Some(Permit::new(self, true)), Some(BreakerState::HalfOpen))
            }
            State::Open { .. } => (None, None),
            State::HalfOpen {
                ref mut probes_in_flight,
            } => {
                if *probes_in_flight < self.half_open_probes {
                    *probes_in_flight += 1;
                    (Some(Permit::new(self, true)), None)
                } else {
                    (None, None)
                }
            }
        }
    }

    fn open(&self, state: &mut State) -> Option<BreakerState> {
        *state = State::Open {
            until: Instant::now() + self.reset_timeout,
        };
        Some(BreakerState::Open)
    }

    fn record(&self, probe: bool, health: Health) -> Option<BreakerState> {
        let mut state = self.lock();
        match (&mut *state, probe, health) {
            (State::HalfOpen { probes_in_flight }, true, Health::Unknown) => {
                *probes_in_flight = probes_in_flight.saturating_sub(1);
                None
            }
            (State::HalfOpen { .. }, true, Health::Reachable) => {
                *state = State::Closed { failures: 0 };
                Some(BreakerState::Closed)
            }
            (State::HalfOpen { .. }, true, Health::Failing) => self.open(&mut state),
            (State::Closed { failures }, false, Health::Reachable) => {
                *failures = 0;
                None
            }
            (State::Closed { failures }, false, Health::Failing) => {
                *failures += 1;
                if *failures >= self.failure_threshold {
                    self.open(&mut state)
                } else {
                    None
                }
            }
            // Results of calls admitted under an earlier state, and unknown
            // results, leave the breaker as it is.
            _ => None,
        }
    }

    /// Frees the slot of a probe whose call was cancelled before it ended.
    fn release_probe(&self) {
        if let State::HalfOpen { probes_in_flight } = &mut *self.lock() {
            *probes_in_flight = probes_in_flight.saturating_sub(1);
        }
    }
}

/// Admission of one call. A probe that is dropped before its result is
/// recorded (the caller's future was cancelled) frees its slot, so a
/// half-open breaker never waits for a probe that will not come back.
struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

impl<'a> Permit<'a> {
    fn new(breaker: &'a Breaker, probe: bool) -> Self {
        Self {
            breaker,
            probe,
            done: false,
        }
    }

    fn complete(&mut self, health: Health) -> Option<BreakerState> {
        self.done = true;
        self.breaker.record(self.probe, health)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.done {
            self.breaker.release_probe();
        }
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for ResilientStore<S> {
    async fn load(&self, id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        self.run("load", true, || self.inner.load(id)).await
    }

    async fn create(&self, session: &StoredSession) -> Result<CreateOutcome, StoreError> {
        self.run("create", false, || self.inner.create(session))
            .await
    }

    async fn save(
        &self,
        session: &StoredSession,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.run("save", false, || self.inner.save(session, expected_version))
            .await
    }

    async fn touch(
        &self,
        id: &SessionId,
        expires_at: Option<OffsetDateTime>,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.run("touch", true, || {
            self.inner.touch(id, expires_at, expected_version)
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.run("delete", true, || self.inner.delete(id)).await
    }

    async fn list_by_identity(&self, identity: &str) -> Result<Vec<SessionId>, StoreError> {
        self.run("list_by_identity", true, || {
            self.inner.list_by_identity(identity)
        })
        .await
    }

    async fn delete_by_identity(&self, identity: &str) -> Result<usize, StoreError> {
        self.run("delete_by_identity", true, || {
            self.inner.delete_by_identity(identity)
        })
        .await
    }

    /// Shuts the wrapped store down directly, without timeout, retries or
    /// breaker, because shutdown waits for its work to drain.
    async fn shutdown(&self) -> Result<(), StoreError> {
        self.inner.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::sync::Notify;

    use super::*;
    use crate::conformance::stored;
    use crate::{ManualClock, MemoryStore};

    /// The behaviour of the next call to a [`ScriptedStore`].
    #[derive(Debug, Clone)]
    enum Fault {
        Unavailable,
        Backend,
        /// Never answers.
        Hang,
        /// Waits for the notification, then passes the call through.
        Gate(Arc<Notify>),
    }

    /// A memory store whose calls fail as scripted, then pass through.
    #[derive(Debug, Default)]
    struct ScriptedStore {
        inner: MemoryStore,
        faults: Mutex<VecDeque<Fault>>,
        calls: AtomicU32,
        shutdowns: AtomicU32,
    }

    impl ScriptedStore {
        fn with(faults: impl IntoIterator<Item = Fault>) -> Self {
            let store = Self::default();
            store.push(faults);
            store
        }

        fn push(&self, faults: impl IntoIterator<Item = Fault>) {
            self.faults.lock().unwrap().extend(faults);
        }

        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }

        async fn enter(&self) -> Result<(), StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let fault = self.faults.lock().unwrap().pop_front();
            match fault {
                None => Ok(()),
                Some(Fault::Unavailable) => Err(StoreError::Unavailable {
                    message: "connection refused".into(),
                }),
                Some(Fault::Backend) => Err(StoreError::Backend {
                    message: "WRONGTYPE".into(),
                }),
                Some(Fault::Hang) => std::future::pending().await,
                Some(Fault::Gate(gate)) => {
                    gate.notified().await;
                    Ok(())
                }
            }
        }
    }

    #[async_trait]
    impl SessionStore for ScriptedStore {
        async fn load(&self, id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
            self.enter().await?;
            self.inner.load(id).await
        }
        async fn create(&self, session: &StoredSession) -> Result<CreateOutcome, StoreError> {
            self.enter().await?;
            self.inner.create(session).await
        }
        async fn save(
            &self,
            session: &StoredSession,
            expected_version: u64,
        ) -> Result<SaveOutcome, StoreError> {
            self.enter().await?;
            self.inner.save(session, expected_version).await
        }
        async fn touch(
            &self,
            id: &SessionId,
            expires_at: Option<OffsetDateTime>,
            expected_version: u64,
        ) -> Result<SaveOutcome, StoreError> {
            self.enter().await?;
            self.inner.touch(id, expires_at, expected_version).await
        }
        async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
            self.enter().await?;
            self.inner.delete(id).await
        }
        async fn list_by_identity(&self, identity: &str) -> Result<Vec<SessionId>, StoreError> {
            self.enter().await?;
            self.inner.list_by_identity(identity).await
        }
        async fn delete_by_identity(&self, identity: &str) -> Result<usize, StoreError> {
            self.enter().await?;
            self.inner.delete_by_identity(identity).await
        }
        async fn shutdown(&self) -> Result<(), StoreError> {
            self.shutdowns.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// Records every store event.
    #[derive(Debug, Default)]
    struct Recorder {
        events: Mutex<Vec<StoreEvent>>,
    }

    impl Recorder {
        fn take(&self) -> Vec<StoreEvent> {
            std::mem::take(&mut *self.events.lock().unwrap())
        }
    }

    impl SessionEvents for Recorder {
        fn on_store_event(&self, event: &StoreEvent) {
            self.events.lock().unwrap().push(*event);
        }
    }

    fn resilient(
        faults: impl IntoIterator<Item = Fault>,
    ) -> (ResilientStore<ScriptedStore>, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let store = ResilientStore::builder(ScriptedStore::with(faults))
            .events(recorder.clone())
            .build();
        (store, recorder)
    }

    fn unavailable(count: usize) -> Vec<Fault> {
        vec![Fault::Unavailable; count]
    }

    #[test]
    fn retry_delays_grow_and_stop_at_the_cap() {
        let policy = RetryPolicy::default();
        let expected_ms = [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000];
        for (retry, ms) in (1..).zip(expected_ms) {
            assert_eq!(
                policy.delay(retry, 0.0),
                Duration::from_millis(ms),
                "retry {retry}"
            );
        }
        assert_eq!(policy.delay(u32::MAX, 0.0), Duration::from_secs(5));
    }

    #[test]
    fn retry_jitter_stays_within_ten_percent() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, -1.0), Duration::from_millis(90));
        assert_eq!(policy.delay(1, 1.0), Duration::from_millis(110));
        assert_eq!(policy.delay(3, -1.0), Duration::from_millis(360));
        assert_eq!(policy.delay(3, 1.0), Duration::from_millis(440));
        assert_eq!(policy.delay(2, 7.0), Duration::from_millis(220), "clamped");
        assert_eq!(
            policy.delay(7, 1.0),
            Duration::from_secs(5),
            "jitter never exceeds the cap"
        );
        assert_eq!(policy.delay(7, -1.0), Duration::from_millis(4_500));
    }

    #[tokio::test(start_paused = true)]
    async fn load_is_retried_until_it_succeeds() {
        let (store, events) = resilient(unavailable(2));
        let started = Instant::now();
        assert_eq!(store.load(&SessionId::random()).await.unwrap(), None);
        assert_eq!(store.inner().calls(), 3);
        assert_eq!(
            events.take(),
            vec![
                StoreEvent::Retry {
                    operation: "load",
                    attempt: 2
                },
                StoreEvent::Retry {
                    operation: "load",
                    attempt: 3
                },
            ]
        );
        // Paused time moves only through the backoff sleeps: 100 ms and
        // 200 ms, each within ±10 %.
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(270), "{waited:?}");
        assert!(waited <= Duration::from_millis(330), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_reaches_the_wrapped_store() {
        let (store, _) = resilient([]);
        store.shutdown().await.unwrap();
        assert_eq!(store.inner().shutdowns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let (store, _) = resilient(unavailable(10));
        let error = store.delete(&SessionId::random()).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
        assert_eq!(store.inner().calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn create_and_save_are_never_retried() {
        let clock = ManualClock::starting_now();
        let session = stored(&clock, None, b"x");
        let (store, events) = resilient(unavailable(2));

        let error = store.create(&session).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
        assert_eq!(store.inner().calls(), 1);

        let error = store.save(&session, 1).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
        assert_eq!(store.inner().calls(), 2);
        assert!(events.take().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn touch_and_listing_are_retried() {
        let clock = ManualClock::starting_now();
        let session = stored(&clock, Some("user-a"), b"x");
        let (store, _) = resilient([]);
        store.create(&session).await.unwrap();

        store.inner().push(unavailable(1));
        assert_eq!(
            store
                .touch(&session.id, session.expires_at, 1)
                .await
                .unwrap(),
            SaveOutcome::Saved
        );
        store.inner().push(unavailable(1));
        assert_eq!(
            store.list_by_identity("user-a").await.unwrap(),
            vec![session.id.clone()]
        );
        store.inner().push(unavailable(1));
        assert_eq!(store.delete_by_identity("user-a").await.unwrap(), 1);
        assert_eq!(store.inner().calls(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn backend_errors_are_not_retried() {
        let (store, _) = resilient([Fault::Backend]);
        let error = store.load(&SessionId::random()).await.unwrap_err();
        assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
        assert_eq!(store.inner().calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn total_time_cap_stops_retries() {
        let store = ResilientStore::builder(ScriptedStore::with(unavailable(10)))
            .max_attempts(10)
            .jitter(0.0)
            .max_elapsed(Duration::from_millis(250))
            .build();
        let error = store.load(&SessionId::random()).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
        // Attempt 1, 100 ms, attempt 2; a further 200 ms would pass 250 ms.
        assert_eq!(store.inner().calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_store_times_out() {
        let store = ResilientStore::builder(ScriptedStore::with([Fault::Hang]))
            .timeout(Duration::from_millis(300))
            .max_attempts(1)
            .build();
        let error = store.load(&SessionId::random()).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "session store operation `load` timed out after 300 ms"
        );
        assert!(matches!(
            error,
            StoreError::Timeout {
                operation: "load",
                after_ms: 300
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn timed_out_attempt_is_retried() {
        let store = ResilientStore::builder(ScriptedStore::with([Fault::Hang]))
            .timeout(Duration::from_millis(300))
            .build();
        assert_eq!(store.load(&SessionId::random()).await.unwrap(), None);
        assert_eq!(store.inner().calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_five_failures() {
        let recorder = Arc::new(Recorder::default());
        let store = ResilientStore::builder(ScriptedStore::with(unavailable(5)))
            .max_attempts(1)
            .events(recorder.clone())
            .build();
        for call in 1..=5 {
            let error = store.load(&SessionId::random()).await.unwrap_err();
            assert!(
                matches!(error, StoreError::Unavailable { .. }),
                "call {call}: {error:?}"
            );
        }
        assert_eq!(store.breaker_state(), BreakerState::Open);
        assert_eq!(recorder.take(), vec![StoreEvent::BreakerOpened]);

        let error = store.load(&SessionId::random()).await.unwrap_err();
        assert!(matches!(error, StoreError::CircuitOpen), "{error:?}");
        assert_eq!(store.inner().calls(), 5, "an open breaker fails fast");
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_ignores_not_found_and_backend_errors() {
        let store = ResilientStore::builder(ScriptedStore::with(vec![Fault::Backend; 10]))
            .max_attempts(1)
            .build();
        for _ in 0..10 {
            assert!(store.load(&SessionId::random()).await.is_err());
        }
        for _ in 0..10 {
            assert_eq!(store.load(&SessionId::random()).await.unwrap(), None);
        }
        assert_eq!(store.breaker_state(), BreakerState::Closed);
        assert_eq!(store.inner().calls(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_failure_count() {
        let store = ResilientStore::builder(ScriptedStore::default())
            .max_attempts(1)
            .build();
        for _ in 0..3 {
            store.inner().push(unavailable(4));
            for _ in 0..4 {
                assert!(store.load(&SessionId::random()).await.is_err());
            }
            assert_eq!(store.load(&SessionId::random()).await.unwrap(), None);
        }
        assert_eq!(store.breaker_state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_exactly_one_probe() {
        let recorder = Arc::new(Recorder::default());
        let store = Arc::new(
            ResilientStore::builder(ScriptedStore::with(unavailable(5)))
                .max_attempts(1)
                .timeout(Duration::from_secs(60))
                .max_elapsed(Duration::from_secs(60))
                .events(recorder.clone())
                .build(),
        );
        for _ in 0..5 {
            assert!(store.load(&SessionId::random()).await.is_err());
        }
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(matches!(
            store.load(&SessionId::random()).await,
            Err(StoreError::CircuitOpen)
        ));

        // After the reset timeout, one probe goes through and is held open.
        tokio::time::advance(Duration::from_secs(1)).await;
        let gate = Arc::new(Notify::new());
        store.inner().push([Fault::Gate(gate.clone())]);
        let probe = tokio::spawn({
            let store = store.clone();
            async move { store.load(&SessionId::random()).await }
        });
        while store.inner().calls() < 6 {
            tokio::task::yield_now().await;
        }
        assert_eq!(store.breaker_state(), BreakerState::HalfOpen);
        for _ in 0..3 {
            assert!(matches!(
                store.load(&SessionId::random()).await,
                Err(StoreError::CircuitOpen)
            ));
        }
        assert_eq!(store.inner().calls(), 6, "only the probe reached the store");

        gate.notify_one();
        assert_eq!(probe.await.unwrap().unwrap(), None);
        assert_eq!(store.breaker_state(), BreakerState::Closed);
        assert_eq!(store.load(&SessionId::random()).await.unwrap(), None);
        assert_eq!(
            recorder.take(),
            vec![
                StoreEvent::BreakerOpened,
                StoreEvent::BreakerHalfOpen,
                StoreEvent::BreakerClosed
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_opens_the_breaker_again() {
        let recorder = Arc::new(Recorder::default());
        let store = ResilientStore::builder(ScriptedStore::with(unavailable(6)))
            .max_attempts(1)
            .events(recorder.clone())
            .build();
        for _ in 0..5 {
            assert!(store.load(&SessionId::random()).await.is_err());
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        let error = store.load(&SessionId::random()).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
        assert_eq!(store.breaker_state(), BreakerState::Open);
        assert!(matches!(
            store.load(&SessionId::random()).await,
            Err(StoreError::CircuitOpen)
        ));
        assert_eq!(store.inner().calls(), 6);
        assert_eq!(
            recorder.take(),
            vec![
                StoreEvent::BreakerOpened,
                StoreEvent::BreakerHalfOpen,
                StoreEvent::BreakerOpened
            ]
        );

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(store.load(&SessionId::random()).await.unwrap(), None);
        assert_eq!(store.breaker_state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_probe_frees_its_slot() {
        let store = ResilientStore::builder(ScriptedStore::with(unavailable(5)))
            .max_attempts(1)
            .timeout(Duration::from_secs(60))
            .max_elapsed(Duration::from_secs(60))
            .build();
        for _ in 0..5 {
            assert!(store.load(&SessionId::random()).await.is_err());
        }
        tokio::time::advance(Duration::from_secs(30)).await;

        store.inner().push([Fault::Hang]);
        let id = SessionId::random();
        let cancelled = tokio::time::timeout(Duration::from_millis(10), store.load(&id)).await;
        assert!(cancelled.is_err(), "the probe hangs until it is dropped");
        assert_eq!(store.breaker_state(), BreakerState::HalfOpen);

        assert_eq!(store.load(&SessionId::random()).await.unwrap(), None);
        assert_eq!(store.breaker_state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opening_mid_retry_returns_the_store_error() {
        let store = ResilientStore::builder(ScriptedStore::with(unavailable(10)))
            .failure_threshold(2)
            .build();
        let error = store.load(&SessionId::random()).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
        assert_eq!(
            store.inner().calls(),
            2,
            "the third attempt met an open breaker"
        );
        assert_eq!(store.breaker_state(), BreakerState::Open);
    }
}
