//! The per-request session state, owned by the request's extensions.
//!
//! Nothing here is shared between requests: each request gets its own
//! handle, loads lazily on the first extractor, and is finished by the layer
//! after the handler returns.

use std::any::Any;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use session_core::{
    dispatch_event, find_cookie_values, render_removal_cookie, render_set_cookie, renewal_marker,
    renewed_to, BindingPolicy, ClientInfo, CookieLifetime, CookieStoreError, CreateOutcome,
    FlashState, SaveOutcome, SessionData, SessionEvent, SessionEventKind, SessionExpiry, SessionId,
    SessionRecord, StoreError, StoredSession,
};
use time::OffsetDateTime;
use tokio::sync::{OnceCell, OwnedMutexGuard};
use tracing::Instrument;

use crate::invalid_cookies::{InvalidCookieTracker, Recorded};
use crate::layer::{Backend, Revalidation, Shared, StoreFailureMode};
use crate::rejection::SessionRejection;

/// How many fresh ids to try when `create` reports the id as taken.
const CREATE_ATTEMPTS: usize = 3;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The type-erased view of a handle, stored in the request extensions so
/// that `Flash` works without knowing the session type.
pub(crate) trait ErasedHandle: Send + Sync + 'static {
    fn ensure_loaded<'a>(&'a self, parts: &'a Parts)
        -> BoxFuture<'a, Result<(), SessionRejection>>;
    fn with_flash(&self, f: &mut dyn FnMut(&mut FlashState));
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The extension inserted by the layer.
#[derive(Clone)]
pub(crate) struct HandleExtension(pub(crate) Arc<dyn ErasedHandle>);

pub(crate) struct SessionHandle<T: SessionData> {
    shared: Arc<Shared<T>>,
    loaded: OnceCell<Result<(), SessionRejection>>,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// The session as this request uses it: loaded, or created in memory by
    /// a write. `None` means anonymous with nothing to store.
    /// Shared with the record cache until the request changes it.
    record: Option<Arc<SessionRecord<T>>>,
    /// The stored form `record` was just decoded from, for the record
    /// cache once the request ends without changing it.
    decoded_from: Option<StoredSession>,
    /// The sealed cookie `record` was just opened from, for the same purpose.
    opened_from: Option<String>,
    /// Id and version of the stored record `record` was loaded from.
    stored: Option<(SessionId, u64)>,
    /// A stored record that `destroy` asked to delete (server stores) or
    /// revoke (cookie store).
    to_delete: Option<Arc<SessionRecord<T>>>,
    flash: FlashState,
    data_changed: bool,
    expiry_changed: bool,
    regenerate: bool,
    /// The client sent a session cookie that led to no session: invalid,
    /// unknown or expired. The response then carries a removal cookie.
    stale_cookie: bool,
    /// Fail-open mode after a store failure: nothing is written back.
    degraded: bool,
    /// A retired key opened the cookie; it is re-issued under the current key.
    reissue_cookie: bool,
    client: Option<ClientInfo>,
    _lock: Option<OwnedMutexGuard<()>>,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        Self {
            record: None,
            decoded_from: None,
            opened_from: None,
            stored: None,
            to_delete: None,
            flash: FlashState::default(),
            data_changed: false,
            expiry_changed: false,
            regenerate: false,
            stale_cookie: false,
            degraded: false,
            reissue_cookie: false,
            client: None,
            _lock: None,
        }
    }
}

impl<T: SessionData> SessionHandle<T> {
    pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
        Self {
            shared,
            loaded: OnceCell::new(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn event(&self, kind: SessionEventKind, id: Option<&SessionId>, previous: Option<&SessionId>) {
        if !self.shared.config.events().wants_events() {
            return;
        }
        let keys = self.shared.config.keys();
        let event = SessionEvent {
            kind,
            digest: id.map(|id| id.digest(keys)),
            previous: previous.map(|id| id.digest(keys)),
        };
        dispatch_event(self.shared.config.events(), &event);
    }

    /// Loads the session once per request; later calls return the first result.
    pub(crate) async fn load(&self, parts: &Parts) -> Result<(), SessionRejection> {
        let outcome = self
            .loaded
            .get_or_init(|| async {
                // Instrumenting with a disabled span would still move the
                // load future into a wrapper, a cost paid on every request.
                let span = tracing::debug_span!("session_load");
                if span.is_disabled() {
                    self.load_uncached(parts).await
                } else {
                    self.load_uncached(parts).instrument(span).await
                }
            })
            .await;
        match outcome {
            Ok(()) => Ok(()),
            Err(rejection) => Err(clone_rejection(rejection)),
        }
    }

    async fn load_uncached(&self, parts: &Parts) -> Result<(), SessionRejection> {
        let config = &self.shared.config;
        let client = config
            .binding()
            .is_enabled()
            .then(|| client_info(config, parts));
        let values = find_cookie_values(
            parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            config.cookie().name(),
        );
        let mut state = State {
            client,
            ..State::default()
        };
        if values.is_empty() {
            *self.state() = state;
            return Ok(());
        }

        // Only a request that carries a session cookie is counted or blocked.
        // The client address is looked up only when the limit may block or
        // a cookie failed, so that valid requests under a warn-only limit pay
        // nothing for it.
        let tracker = self.shared.invalid_cookies.as_ref();
        let mut looked_up = None;
        if let Some(tracker) = tracker.filter(|tracker| tracker.limit().blocks()) {
            let client = *looked_up.insert(client_ip(config, parts));
            if let Some(retry_after) = tracker.blocked_for(client, config.clock().now()) {
                metrics::counter!("session_invalid_cookie_blocks_total").increment(1);
                return Err(SessionRejection::TooManyInvalidCookies { retry_after });
            }
        }

        let loaded = match &self.shared.backend {
            Backend::Server(_) => self.load_from_server(&values, &mut state).await,
            Backend::Cookie(_) => self.load_from_cookie(&values, &mut state).await,
        };
        match loaded {
            Ok(Some(record)) => {
                // The flash lives in the state until `persist` puts the
                // messages to keep back into the record.
                state.flash = FlashState::from_pending(record.flash.clone());
                state.record = Some(record);
                self.revalidate(&mut state).await;
            }
            Ok(None) => {
                state.stale_cookie = true;
                if let Some(tracker) = tracker {
                    let client = looked_up.unwrap_or_else(|| client_ip(config, parts));
                    self.count_invalid_cookie(tracker, client);
                }
            }
            Err(error) => match self.shared.failure_mode {
                StoreFailureMode::Reject => {
                    metrics::counter!("session_store_errors_total", "operation" => "load")
                        .increment(1);
                    return Err(SessionRejection::StoreUnavailable(error));
                }
                StoreFailureMode::ServeAnonymous => {
                    tracing::error!(%error, "session store failed; serving the request as anonymous, nothing will be written");
                    metrics::counter!("session_store_errors_total", "operation" => "load")
                        .increment(1);
                    state.degraded = true;
                }
            },
        }
        *self.state() = state;
        Ok(())
    }

    /// Counts a cookie that led to no session, and reports a client that
    /// went over the limit.
    fn count_invalid_cookie(&self, tracker: &InvalidCookieTracker, ip: Option<IpAddr>) {
        let now = self.shared.config.clock().now();
        if let Recorded::WentOver { failures } = tracker.record_failure(ip, now) {
            let limit = tracker.limit();
            metrics::counter!("session_invalid_cookie_floods_total").increment(1);
            self.event(SessionEventKind::InvalidCookieFlood, None, None);
            let client = ip.map(|ip| ip.to_string()).unwrap_or_default();
            tracing::warn!(
                %client,
                failures,
                window_s = limit.window().as_secs(),
                blocking = limit.blocks(),
                "client sent more invalid or unknown session cookies than the limit allows; possible session id guessing"
            );
        }
    }

    async fn load_from_cookie(
        &self,
        values: &[&str],
        state: &mut State<T>,
    ) -> Result<Option<Arc<SessionRecord<T>>>, StoreError> {
        let Backend::Cookie(store) = &self.shared.backend else {
            unreachable!("load_from_cookie is called for the cookie backend only");
        };
        for value in values {
            let (record, needs_reseal) = match self.shared.sealed.get(value) {
                // A cookie opened before: only the checks that depend on
                // more than its bytes run again. A clean request has no
                // reseal pending, so a cached cookie needs none.
                Some(record) => {
                    if record.is_expired(self.shared.config.clock().now()) {
                        tracing::debug!("session cookie has expired; treating it as no session");
                        continue;
                    }
                    if store.is_revoked(record.id()).await? {
                        continue;
                    }
                    (record, false)
                }
                None => {
                    let Some(loaded) = store.load::<T>(value).await? else {
                        continue;
                    };
                    // Cached only if the request leaves it unchanged, as on
                    // the server path.
                    state.opened_from = Some((*value).to_owned());
                    (Arc::new(loaded.record), loaded.needs_reseal)
                }
            };
            let id = record.id().clone();
            if !self.binding_holds(&record, &id, state) {
                // Strict binding: revoke so that copies die too.
                store.revoke(&record).await?;
                self.event(SessionEventKind::Destroyed, Some(&id), None);
                return Ok(None);
            }
            metrics::counter!("session_loaded_total").increment(1);
            self.event(SessionEventKind::Loaded, Some(&id), None);
            state.reissue_cookie = needs_reseal;
            state.stored = Some((id, record.version()));
            return Ok(Some(record));
        }
        self.event(SessionEventKind::Tampered, None, None);
        Ok(None)
    }

    /// Checks the client against the record's binding fingerprint. Returns
    /// false when the session must be dropped (strict policy and a mismatch).
    fn binding_holds(&self, record: &SessionRecord<T>, id: &SessionId, state: &State<T>) -> bool {
        let config = &self.shared.config;
        let (Some(bound), Some(client)) = (record.binding(), state.client.as_ref()) else {
            return true;
        };
        let Some(current) = config.fingerprint(client) else {
            return true;
        };
        let mismatch = bound.compare(&current);
        if !mismatch.any() {
            return true;
        }
        metrics::counter!("session_binding_mismatches_total").increment(1);
        self.event(SessionEventKind::BindingMismatch, Some(id), None);
        if config.binding().policy == BindingPolicy::Strict {
            tracing::warn!(ip = mismatch.ip, user_agent = mismatch.user_agent, digest = %id.digest(config.keys()), "client does not match the session binding; destroying the session");
            return false;
        }
        tracing::warn!(ip = mismatch.ip, user_agent = mismatch.user_agent, digest = %id.digest(config.keys()), "client does not match the session binding; serving it (detect policy)");
        true
    }

    async fn load_from_server(
        &self,
        values: &[&str],
        state: &mut State<T>,
    ) -> Result<Option<Arc<SessionRecord<T>>>, StoreError> {
        let Backend::Server(store) = &self.shared.backend else {
            unreachable!("load_from_server is called for server stores only");
        };
        let config = &self.shared.config;

        // The signature is checked before any store call, so forged or
        // malformed values never reach the store.
        let Some((id, signed_by_retired_key)) = values
            .iter()
            .find_map(|value| self.shared.verified_ids.verify(value))
        else {
            tracing::warn!(
                "session cookie failed the signature check; treating the request as anonymous"
            );
            metrics::counter!("session_cookies_rejected_total", "reason" => "signature")
                .increment(1);
            self.event(SessionEventKind::Tampered, None, None);
            return Ok(None);
        };
        state.reissue_cookie = signed_by_retired_key;

        state._lock = Some(self.lock_session(&id).await?);

        let started = Instant::now();
        let stored = store.load(&id).await?;
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "session store load"
        );
        let Some(stored) = stored else {
            tracing::debug!(digest = %id.digest(config.keys()), "session id is unknown or expired in the store");
            self.event(SessionEventKind::UnknownId, Some(&id), None);
            return Ok(None);
        };

        // A renewal moved this session to a new id: within the grace window
        // the old id leads there, and the response carries the new cookie.
        let (id, stored) = match renewed_to(&stored) {
            None => (id, stored),
            Some(new_id) => {
                state._lock = Some(self.lock_session(&new_id).await?);

                // The layer's clock decides when the grace window ends, as it
                // decides every other expiry, whatever clock the store uses.
                let now = config.clock().now();
                if stored.expires_at.is_some_and(|deadline| now >= deadline) {
                    tracing::debug!(digest = %id.digest(config.keys()), "renewal grace window is over");
                    self.event(SessionEventKind::Expired, Some(&id), None);
                    return Ok(None);
                }
                let renewed = store.load(&new_id).await?;
                let Some(renewed) = renewed.filter(|renewed| renewed_to(renewed).is_none()) else {
                    tracing::debug!(digest = %new_id.digest(config.keys()), "renewed session is gone");
                    self.event(SessionEventKind::UnknownId, Some(&new_id), None);
                    return Ok(None);
                };
                state.reissue_cookie = true;
                (new_id, renewed)
            }
        };
        let version = stored.version;

        let record = match self.shared.records.get(&stored) {
            Some(record) => record,
            None => match SessionRecord::<T>::from_stored(stored.clone(), config.codec()) {
                Ok(record) => {
                    // Cached only if the request leaves it unchanged, so a
                    // request that changes it owns it and never copies it.
                    state.decoded_from = Some(stored);
                    Arc::new(record)
                }
                Err(error) => {
                    tracing::warn!(%error, digest = %id.digest(config.keys()), "stored session record could not be decoded; treating it as absent");
                    metrics::counter!("session_records_undecodable_total").increment(1);
                    return Ok(None);
                }
            },
        };

        if record.is_expired(config.clock().now()) {
            tracing::debug!(digest = %id.digest(config.keys()), "session expired");
            metrics::counter!("session_expired_total").increment(1);
            self.event(SessionEventKind::Expired, Some(&id), None);
            return Ok(None);
        }

        if !self.binding_holds(&record, &id, state) {
            store.delete(&id).await?;
            self.event(SessionEventKind::Destroyed, Some(&id), None);
            return Ok(None);
        }

        metrics::counter!("session_loaded_total").increment(1);
        self.event(SessionEventKind::Loaded, Some(&id), None);
        state.stored = Some((id, version));
        Ok(Some(record))
    }

    /// Waits for the per-session lock of `id`, up to the layer's lock timeout.
    async fn lock_session(&self, id: &SessionId) -> Result<OwnedMutexGuard<()>, StoreError> {
        let timeout = self.shared.lock_timeout;
        self.shared
            .locks
            .acquire(id, timeout)
            .await
            .ok_or(StoreError::Timeout {
                operation: "session lock",
                after_ms: timeout.as_millis() as u64,
            })
    }

    /// Applies the revalidation hook to a loaded, signed-in session.
    async fn revalidate(&self, state: &mut State<T>) {
        let (Some(hook), Some(record)) = (&self.shared.revalidator, state.record.as_mut()) else {
            return;
        };
        if !record.data.is_authenticated() {
            return;
        }
        match hook(&record.data).await {
            Revalidation::Valid => {}
            Revalidation::Update(data) => {
                let gained_role = data.roles().iter().any(|role| !record.data.has_role(role));
                Arc::make_mut(record).data = data;
                state.data_changed = true;
                if gained_role {
                    state.regenerate = true;
                }
            }
            Revalidation::Invalid => {
                tracing::info!(digest = %record.id().digest(self.shared.config.keys()), "revalidation ended the session");
                if state.stored.take().is_some() {
                    state.to_delete = state.record.take();
                }
                state.record = None;
                state.flash = FlashState::default();
            }
        }
    }

    /// Runs `f` on the data, read-only.
    pub(crate) fn read<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        let state = self.state();
        f(state.record.as_deref().map(|record| &record.data))
    }

    /// Runs `f` on the data, creating an in-memory session if there is none,
    /// and marks it changed.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut state = self.state();
        let state = &mut *state;
        if state.degraded {
            tracing::warn!("session store is unavailable; this change will not be saved");
        }
        let record = self.record_mut(state);
        let result = f(&mut record.data);
        state.data_changed = true;
        result
    }

    fn record_mut<'s>(&self, state: &'s mut State<T>) -> &'s mut SessionRecord<T> {
        let config = &self.shared.config;
        let record = state.record.get_or_insert_with(|| {
            Arc::new(SessionRecord::new(
                config.ids().generate(),
                T::default(),
                config.clock().now(),
                config.idle_timeout(),
                config.absolute_lifetime(),
                config.cookie().lifetime() == CookieLifetime::Persistent,
            ))
        });
        // Copies the record once if the record cache still shares it.
        Arc::make_mut(record)
    }

    pub(crate) fn regenerate(&self) {
        let mut state = self.state();
        if state.record.is_some() {
            state.regenerate = true;
        }
    }

    pub(crate) fn destroy(&self) {
        let mut state = self.state();
        if state.stored.take().is_some() {
            state.to_delete = state.record.take();
        }
        state.record = None;
        state.flash = FlashState::default();
        state.data_changed = false;
        state.expiry_changed = false;
        state.regenerate = false;
    }

    pub(crate) fn set_expiry(&self, expiry: SessionExpiry) {
        let config = &self.shared.config;
        let mut state = self.state();
        let state = &mut *state;
        let now = config.clock().now();
        let record = self.record_mut(state);
        record.set_expiry(
            expiry,
            now,
            config.idle_timeout(),
            config.absolute_lifetime(),
            config.cookie().lifetime() == CookieLifetime::Persistent,
        );
        state.expiry_changed = true;
    }

    /// Returns true once an extractor asked for the session.
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.initialized()
    }

    /// Releases the session lock and returns true when the request left
    /// nothing for [`SessionHandle::finish`] to write or send, so that the
    /// response needs no save step.
    pub(crate) fn release_if_clean(&self) -> bool {
        let mut state = self.state();
        let clean = state.degraded
            || (state.to_delete.is_none()
                && match &state.record {
                    None => !state.stale_cookie,
                    Some(record) => {
                        let changed =
                            state.data_changed || state.expiry_changed || state.flash.is_modified();
                        !changed
                            && state.stored.as_ref().is_none_or(|_| {
                                let config = &self.shared.config;
                                let now = config.clock().now();
                                !state.regenerate
                                    && !state.reissue_cookie
                                    && !record.refresh_due(now, config.refresh_interval())
                                    && !self.renewal_due(record, now)
                            })
                    }
                });
        if clean {
            let state = &mut *state;
            if let Some(record) = &state.record {
                if let Some(stored) = state.decoded_from.take() {
                    self.shared.records.put(stored, record.clone());
                }
                if let Some(value) = state.opened_from.take() {
                    self.shared.sealed.put(&value, record.clone());
                }
            }
            state._lock = None;
        }
        clean
    }

    /// Saves what the request changed and decorates the response. Runs after
    /// the handler and before the response head leaves the server.
    pub(crate) async fn finish(&self, mut response: Response) -> Response {
        if self.loaded.get().is_none() {
            return response;
        }
        let state = std::mem::take(&mut *self.state());
        if state.degraded {
            return response;
        }
        match self
            .persist(state)
            .instrument(tracing::debug_span!("session_save"))
            .await
        {
            Ok(Some(set_cookie)) => {
                append_set_cookie(response.headers_mut(), set_cookie);
                response
            }
            Ok(None) => response,
            Err(rejection) => rejection.into_response(),
        }
    }

    /// Writes the state back and returns the `Set-Cookie` value to send.
    async fn persist(&self, mut state: State<T>) -> Result<Option<String>, SessionRejection> {
        let config = &self.shared.config;
        let now = config.clock().now();
        let mut set_cookie = None;

        if let Some(old) = state.to_delete.take() {
            self.remove(&old).await?;
            metrics::counter!("session_destroyed_total").increment(1);
            self.event(SessionEventKind::Destroyed, Some(old.id()), None);
            set_cookie = Some(render_removal_cookie(config.cookie()));
        }

        let Some(record) = state.record.take() else {
            if state.stale_cookie && set_cookie.is_none() {
                set_cookie = Some(render_removal_cookie(config.cookie()));
            }
            return Ok(set_cookie);
        };
        let mut record = Arc::unwrap_or_clone(record);
        let flash_modified = state.flash.is_modified();
        record.flash = std::mem::take(&mut state.flash).into_pending();
        let changed = state.data_changed || flash_modified || state.expiry_changed;

        match state.stored.take() {
            None => {
                if !changed {
                    return Ok(set_cookie);
                }
                record.mark_seen(now);
                if let Some(client) = &state.client {
                    record.set_binding(config.fingerprint(client));
                }
                let cookie = self.insert(&mut record, now).await?;
                metrics::counter!("session_created_total").increment(1);
                self.event(SessionEventKind::Started, Some(record.id()), None);
                Ok(Some(cookie))
            }
            Some((old_id, _)) if state.regenerate => {
                let old = record.clone();
                record.mark_seen(now);
                record.renew_id(config.ids().generate(), now);
                let cookie = self.insert(&mut record, now).await?;

                // The old id goes only once the new record is stored. If
                // that fails, the new record is dropped again so that the old
                // id is not left valid beside the new one.
                if let Err(rejection) = self.remove(&old).await {
                    if let Err(cleanup) = self.remove(&record).await {
                        tracing::error!(error = %cleanup, "could not remove the new session after a failed regeneration");
                    }
                    return Err(rejection);
                }
                metrics::counter!("session_regenerated_total").increment(1);
                self.event(
                    SessionEventKind::Regenerated,
                    Some(record.id()),
                    Some(&old_id),
                );
                Ok(Some(cookie))
            }
            Some((old_id, version)) if self.renewal_due(&record, now) => {
                self.renew(record, old_id, version, now, changed).await
            }
            Some((id, version)) if changed => {
                record.mark_seen(now);
                let cookie = self.write_back(&mut record, &id, version, now).await?;
                let must_send =
                    record.is_persistent() || state.expiry_changed || state.reissue_cookie;
                match cookie {
                    Updated::Server if must_send => Ok(Some(self.cookie_for(&record, now))),
                    Updated::Server => Ok(set_cookie),
                    Updated::Cookie(cookie) => Ok(Some(cookie)),
                    Updated::Vanished => Ok(set_cookie),
                }
            }
            Some((id, version)) if record.refresh_due(now, config.refresh_interval()) => {
                record.mark_seen(now);
                self.slide(&mut record, &id, version, now).await
            }
            Some(_) if state.reissue_cookie => match &self.shared.backend {
                Backend::Cookie(_) => self.insert(&mut record, now).await.map(Some),
                Backend::Server(_) => Ok(Some(self.cookie_for(&record, now))),
            },
            Some(_) => Ok(set_cookie),
        }
    }

    /// Returns true when the configured renewal interval has passed since
    /// the record's id was issued, on a server-side store.
    fn renewal_due(&self, record: &SessionRecord<T>, now: OffsetDateTime) -> bool {
        matches!(self.shared.backend, Backend::Server(_))
            && self
                .shared
                .config
                .renewal_interval()
                .is_some_and(|interval| record.renewal_due(now, interval))
    }

    /// Moves a session whose id is due for renewal to a new id, with the
    /// request's changes, and leaves a marker under the old id for the grace
    /// window. The marker is written with compare-and-set on the version the
    /// request loaded, so of two requests renewing at once only one wins.
    async fn renew(
        &self,
        mut record: SessionRecord<T>,
        old_id: SessionId,
        version: u64,
        now: OffsetDateTime,
        changed: bool,
    ) -> Result<Option<String>, SessionRejection> {
        let Backend::Server(store) = &self.shared.backend else {
            unreachable!("renewal applies to server-side stores only");
        };
        let config = &self.shared.config;
        record.mark_seen(now);
        record.renew_id(config.ids().generate(), now);
        let cookie = self.insert(&mut record, now).await?;

        // The marker never outlives the session it points to.
        let grace_end = now + config.renewal_grace();
        let until = record
            .expires_at()
            .map_or(grace_end, |deadline| deadline.min(grace_end));
        let marker = renewal_marker(&old_id, version, record.id(), until);
        let outcome = store.save(&marker, version).await;
        if let Ok(SaveOutcome::Saved) = outcome {
            self.shared.records.forget(&old_id);
            metrics::counter!("session_renewed_total").increment(1);
            self.event(
                SessionEventKind::Regenerated,
                Some(record.id()),
                Some(&old_id),
            );
            return Ok(Some(cookie));
        }

        // Another request changed, renewed or ended the session first: drop
        // the new record so that the session keeps one id.
        if let Err(cleanup) = self.remove(&record).await {
            tracing::error!(error = %cleanup, "could not remove the new session after a lost renewal");
        }
        match outcome {
            Ok(SaveOutcome::Missing) => {
                tracing::debug!(digest = %old_id.digest(config.keys()), "session ended before its renewal; not recreating it");
                Ok(Some(render_removal_cookie(config.cookie())))
            }
            Ok(_) if changed => {
                metrics::counter!("session_conflicts_total").increment(1);
                Err(SessionRejection::Conflict)
            }
            // Nothing of this request is lost: the session lives on under
            // the id the other request gave it, or under the old one.
            Ok(_) => Ok(None),
            Err(error) => Err(store_failed("save", error)),
        }
    }

    /// Stores a new record and returns its `Set-Cookie` value. Server stores
    /// draw a fresh id whenever the id is taken.
    async fn insert(
        &self,
        record: &mut SessionRecord<T>,
        now: OffsetDateTime,
    ) -> Result<String, SessionRejection> {
        let config = &self.shared.config;
        let store = match &self.shared.backend {
            Backend::Server(store) => store,
            Backend::Cookie(store) => {
                return store
                    .seal(record, self.max_age(record, now))
                    .map_err(cookie_failed)
            }
        };
        for attempt in 1..=CREATE_ATTEMPTS {
            let stored = record.to_stored(config.codec()).map_err(encoding_failed)?;
            match store
                .create(&stored)
                .await
                .map_err(|error| store_failed("create", error))?
            {
                CreateOutcome::Created => {
                    record.committed(stored.version);
                    return Ok(self.cookie_for(record, now));
                }
                CreateOutcome::IdTaken => {
                    tracing::warn!(
                        attempt,
                        "new session id collided with a live session; drawing another"
                    );
                    record.set_id(config.ids().generate());
                }
            }
        }
        Err(SessionRejection::Conflict)
    }

    /// Writes a changed record with compare-and-set on its version.
    async fn write_back(
        &self,
        record: &mut SessionRecord<T>,
        id: &SessionId,
        version: u64,
        now: OffsetDateTime,
    ) -> Result<Updated, SessionRejection> {
        let config = &self.shared.config;
        let store = match &self.shared.backend {
            Backend::Server(store) => store,
            Backend::Cookie(store) => {
                let cookie = store
                    .seal(record, self.max_age(record, now))
                    .map_err(cookie_failed)?;
                metrics::counter!("session_saved_total").increment(1);
                self.event(SessionEventKind::Saved, Some(id), None);
                return Ok(Updated::Cookie(cookie));
            }
        };
        let stored = record.to_stored(config.codec()).map_err(encoding_failed)?;
        match store
            .save(&stored, version)
            .await
            .map_err(|error| store_failed("save", error))?
        {
            SaveOutcome::Saved => {
                record.committed(stored.version);
                metrics::counter!("session_saved_total").increment(1);
                self.event(SessionEventKind::Saved, Some(id), None);
                Ok(Updated::Server)
            }
            SaveOutcome::Conflict => {
                metrics::counter!("session_conflicts_total").increment(1);
                Err(SessionRejection::Conflict)
            }
            SaveOutcome::Missing => {
                // Destroyed or expired while this request ran: never bring
                // it back, and send no cookie for it.
                tracing::debug!(digest = %id.digest(config.keys()), "session vanished before the save; not recreating it");
                Ok(Updated::Vanished)
            }
        }
    }

    /// Slides the idle deadline of an unchanged record: a TTL touch on a
    /// server store, a re-sealed cookie on the cookie store.
    async fn slide(
        &self,
        record: &mut SessionRecord<T>,
        id: &SessionId,
        version: u64,
        now: OffsetDateTime,
    ) -> Result<Option<String>, SessionRejection> {
        let store = match &self.shared.backend {
            Backend::Server(store) => store,
            Backend::Cookie(store) => {
                // A refresh that does not fit the budget leaves the old
                // cookie in place, which is still valid.
                return Ok(store.seal(record, self.max_age(record, now)).ok());
            }
        };
        match store.touch(id, record.expires_at(), version).await {
            Ok(SaveOutcome::Saved) if record.is_persistent() => {
                Ok(Some(self.cookie_for(record, now)))
            }
            Ok(_) => Ok(None),
            Err(error) => {
                // The read succeeded; a failed slide only shortens the
                // session, so the response is sent as it is.
                tracing::warn!(%error, "session refresh failed; the idle deadline was not extended");
                Ok(None)
            }
        }
    }

    /// Deletes a stored record, or revokes a cookie-store session.
    async fn remove(&self, record: &SessionRecord<T>) -> Result<(), SessionRejection> {
        match &self.shared.backend {
            Backend::Server(store) => {
                self.shared.records.forget(record.id());
                store
                    .delete(record.id())
                    .await
                    .map(drop)
                    .map_err(|error| store_failed("delete", error))
            }
            Backend::Cookie(store) => store
                .revoke(record)
                .await
                .map_err(|error| store_failed("revoke", error)),
        }
    }

    fn max_age(&self, record: &SessionRecord<T>, now: OffsetDateTime) -> Option<time::Duration> {
        if record.is_persistent() {
            record.expires_at().map(|deadline| deadline - now)
        } else {
            None
        }
    }

    fn cookie_for(&self, record: &SessionRecord<T>, now: OffsetDateTime) -> String {
        let config = &self.shared.config;
        let value = record
            .id()
            .to_cookie_value(config.keys(), config.cookie().name());
        render_set_cookie(config.cookie(), &value, self.max_age(record, now), now)
    }
}

/// The outcome of `write_back`.
enum Updated {
    /// Saved to a server store.
    Server,
    /// Re-sealed into this cookie.
    Cookie(String),
    /// The record was gone; nothing was written.
    Vanished,
}

impl<T: SessionData> ErasedHandle for SessionHandle<T> {
    fn ensure_loaded<'a>(
        &'a self,
        parts: &'a Parts,
    ) -> BoxFuture<'a, Result<(), SessionRejection>> {
        Box::pin(self.load(parts))
    }

    fn with_flash(&self, f: &mut dyn FnMut(&mut FlashState)) {
        let mut state = self.state();
        let state = &mut *state;
        let before = state.flash.clone();
        f(&mut state.flash);
        // A flash set on an anonymous request needs a session to live in.
        if state.flash != before && state.record.is_none() {
            self.record_mut(state);
        }
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

fn store_failed(operation: &'static str, error: StoreError) -> SessionRejection {
    metrics::counter!("session_store_errors_total", "operation" => operation).increment(1);
    SessionRejection::StoreUnavailable(error)
}

fn cookie_failed(error: CookieStoreError) -> SessionRejection {
    match error {
        CookieStoreError::TooLarge { size, limit } => {
            metrics::counter!("session_oversized_cookies_total").increment(1);
            SessionRejection::TooLarge { size, limit }
        }
        CookieStoreError::Codec(error) => encoding_failed(error),
        other => SessionRejection::Encoding(other.to_string()),
    }
}

fn encoding_failed(error: session_core::CodecError) -> SessionRejection {
    match error {
        session_core::CodecError::TooLarge { claimed, limit } => SessionRejection::TooLarge {
            size: claimed,
            limit,
        },
        other => SessionRejection::Encoding(other.to_string()),
    }
}

fn clone_rejection(rejection: &SessionRejection) -> SessionRejection {
    match rejection {
        SessionRejection::MissingLayer { type_name } => {
            SessionRejection::MissingLayer { type_name }
        }
        SessionRejection::StoreUnavailable(error) => {
            SessionRejection::StoreUnavailable(error.clone())
        }
        SessionRejection::TooLarge { size, limit } => SessionRejection::TooLarge {
            size: *size,
            limit: *limit,
        },
        SessionRejection::Conflict => SessionRejection::Conflict,
        SessionRejection::Busy => SessionRejection::Busy,
        SessionRejection::Encoding(message) => SessionRejection::Encoding(message.clone()),
        SessionRejection::TooManyInvalidCookies { retry_after } => {
            SessionRejection::TooManyInvalidCookies {
                retry_after: *retry_after,
            }
        }
    }
}

/// Returns the client's address: the peer, or what trusted proxies forwarded.
fn client_ip(config: &session_core::SessionConfig, parts: &Parts) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok());
    Some(config.trusted_proxies().client_ip(peer, forwarded))
}

fn client_info(config: &session_core::SessionConfig, parts: &Parts) -> ClientInfo {
    let ip = client_ip(config, parts);
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    ClientInfo { ip, user_agent }
}

/// Appends the session cookie, keeping every `Set-Cookie` set by other code,
/// and keeps shared caches from storing the response.
fn append_set_cookie(headers: &mut HeaderMap, set_cookie: String) {
    let Ok(value) = HeaderValue::from_str(&set_cookie) else {
        tracing::error!("rendered session cookie is not a valid header value; not sending it");
        return;
    };
    headers.append(header::SET_COOKIE, value);

    match headers
        .get(header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
    {
        None => {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Some(existing) if !existing.contains("no-store") && !existing.contains("private") => {
            let combined = format!("{existing}, no-cache=\"Set-Cookie\"");
            if let Ok(value) = HeaderValue::from_str(&combined) {
                headers.insert(header::CACHE_CONTROL, value);
            }
        }
        Some(_) => {}
    }
}
