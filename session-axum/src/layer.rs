//! `SessionLayer` and the service it wraps around a router.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use session_core::{
    CookieStore, SessionConfig, SessionData, SessionStore, StoreError, VerifiedIdCache,
    DEFAULT_VERIFIED_ID_SLOTS,
};
use tokio::sync::Notify;
use tower_layer::Layer;
use tower_service::Service;

use crate::handle::{HandleExtension, SessionHandle};
use crate::invalid_cookies::{InvalidCookieLimit, InvalidCookieTracker};
use crate::locks::LockTable;
use crate::records::{RecordCache, SealedCache, DEFAULT_RECORD_SLOTS};

/// The outcome for a request whose session load fails in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StoreFailureMode {
    /// Reject with 503 and write nothing (default).
    #[default]
    Reject,
    /// Serve the request as anonymous and write nothing back, so the stored
    /// session is never overwritten. Use it where an outage should degrade
    /// to "signed out" rather than to errors.
    ServeAnonymous,
}

pub(crate) enum Backend {
    Server(Arc<dyn SessionStore>),
    Cookie(CookieStore),
}

/// The verdict of a revalidation hook on a signed-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revalidation<T> {
    /// The session data is still true.
    Valid,
    /// The data changed at the source (new roles, a renamed user): replace
    /// it. When the new data contains a role the old data did not, the session
    /// id is also regenerated, as for any privilege increase.
    Update(T),
    /// The session must end (user deleted or disabled, password changed):
    /// it is destroyed and the request continues as anonymous.
    Invalid,
}

pub(crate) type Revalidator<T> =
    Arc<dyn Fn(&T) -> Pin<Box<dyn Future<Output = Revalidation<T>> + Send>> + Send + Sync>;

pub(crate) struct Shared<T> {
    pub(crate) config: SessionConfig,
    pub(crate) backend: Backend,
    pub(crate) locks: LockTable,
    pub(crate) failure_mode: StoreFailureMode,
    pub(crate) lock_timeout: Duration,
    pub(crate) in_flight: InFlight,
    pub(crate) revalidator: Option<Revalidator<T>>,
    pub(crate) verified_ids: VerifiedIdCache,
    pub(crate) records: RecordCache<T>,
    pub(crate) sealed: SealedCache<T>,
    pub(crate) invalid_cookies: Option<InvalidCookieTracker>,
    _data: PhantomData<fn() -> T>,
}

/// Counts requests whose session is being finished, for graceful shutdown.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    /// Set once `shutdown` waits, so that requests notify only then.
    waiting: AtomicBool,
    idle: Notify,
}

impl InFlight {
    fn enter(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn leave(&self) {
        let last = self.count.fetch_sub(1, Ordering::SeqCst) == 1;
        if last && self.waiting.load(Ordering::SeqCst) {
            self.idle.notify_waiters();
        }
    }

    async fn wait_idle(&self) {
        self.waiting.store(true, Ordering::SeqCst);
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A tower layer that gives every request a lazily loaded session of type `T`.
///
/// - The session cookie's signature is checked before any store call.
/// - Nothing is loaded until an extractor asks, so routes that never touch
///   the session cost no store call and send no `Set-Cookie`.
/// - After the handler, the session is saved only if its data or flash
///   changed, its id was regenerated, or a sliding refresh is due; the write
///   finishes before the response is returned.
/// - Requests of one session on this node are serialised from load to save,
///   and saves are compare-and-set on the record version across nodes.
///
/// ```
/// use axum::{routing::get, Router};
/// use serde::{Deserialize, Serialize};
/// use session_axum::{CurrentSession, MemoryStore, Session, SessionConfig, SessionLayer};
///
/// #[derive(Session, Default, Clone, Serialize, Deserialize)]
/// struct Visit {
///     #[session(identity)]
///     user_id: Option<u64>,
///     count: u32,
/// }
///
/// async fn count(session: CurrentSession<Visit>) -> String {
///     let count = session.update(|visit| {
///         visit.count += 1;
///         visit.count
///     });
///     format!("visit {count}")
/// }
///
/// let config = SessionConfig::development([42u8; 32]).build().unwrap();
/// let app: Router = Router::new()
///     .route("/", get(count))
///     .layer(SessionLayer::<Visit>::new(MemoryStore::default(), config));
/// ```
pub struct SessionLayer<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for SessionLayer<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for SessionLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("config", &self.shared.config)
            .field("failure_mode", &self.shared.failure_mode)
            .finish_non_exhaustive()
    }
}

impl<T: SessionData> SessionLayer<T> {
    /// Creates a layer over a server-side store.
    pub fn new(store: impl SessionStore, config: SessionConfig) -> Self {
        Self::from_backend(Backend::Server(Arc::new(store)), config)
    }

    /// Creates a layer over a shared store handle.
    pub fn from_shared_store(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        Self::from_backend(Backend::Server(store), config)
    }

    /// Creates a layer whose sessions travel in an encrypted cookie, with no
    /// server-side state.
    ///
    /// `config` must be the configuration the `CookieStore` was built with,
    /// so that both seal and read with the same keys and attributes. The
    /// store's revocation setting is logged once here.
    pub fn with_cookie_store(store: CookieStore, config: SessionConfig) -> Self {
        store.log_statelessness();
        Self::from_backend(Backend::Cookie(store), config)
    }

    fn from_backend(backend: Backend, config: SessionConfig) -> Self {
        let (records, sealed) = record_caches(&backend, DEFAULT_RECORD_SLOTS);
        Self {
            shared: Arc::new(Shared {
                verified_ids: VerifiedIdCache::new(&config, DEFAULT_VERIFIED_ID_SLOTS),
                records,
                sealed,
                invalid_cookies: Some(InvalidCookieTracker::new(InvalidCookieLimit::default())),
                config,
                backend,
                locks: LockTable::default(),
                failure_mode: StoreFailureMode::Reject,
                lock_timeout: Duration::from_secs(10),
                in_flight: InFlight::default(),
                revalidator: None,
                _data: PhantomData,
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared<T> {
        Arc::get_mut(&mut self.shared)
            .expect("SessionLayer settings are changed before the layer is cloned")
    }

    /// Sets what happens when the store fails while loading (default
    /// [`StoreFailureMode::Reject`]).
    ///
    /// # Panics
    ///
    /// When called after the layer was cloned.
    pub fn on_store_failure(mut self, mode: StoreFailureMode) -> Self {
        self.shared_mut().failure_mode = mode;
        self
    }

    /// Sets how long a request waits for another request of the same session
    /// on this node before it is rejected with 503 (default 10 seconds).
    ///
    /// # Panics
    ///
    /// When called after the layer was cloned.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.shared_mut().lock_timeout = timeout;
        self
    }

    /// Sets how many signed session cookies are remembered after their HMAC
    /// check passed (default 4096, rounded up to a power of two; 0 turns the
    /// cache off).
    ///
    /// A client that sends a remembered cookie again is matched with a
    /// constant-time comparison instead of a new HMAC; any other value is
    /// checked in full. Each entry takes about 120 bytes. Only server-side
    /// stores use it: the cookie store opens its sealed cookie every time.
    ///
    /// # Panics
    ///
    /// When called after the layer was cloned.
    pub fn verified_id_cache(mut self, slots: usize) -> Self {
        let shared = self.shared_mut();
        shared.verified_ids = VerifiedIdCache::new(&shared.config, slots);
        self
    }

    /// Sets the limit on invalid or unknown session cookies per client
    /// (default [`InvalidCookieLimit::default`]: 20 per minute, warning
    /// only; `None` turns the counting off). See [`InvalidCookieLimit`].
    ///
    /// # Panics
    ///
    /// When called after the layer was cloned.
    pub fn invalid_cookie_limit(mut self, limit: Option<InvalidCookieLimit>) -> Self {
        self.shared_mut().invalid_cookies = limit.map(InvalidCookieTracker::new);
        self
    }

    /// Sets how many decoded sessions are kept (default 4096, rounded up to
    /// a power of two; 0 turns the cache off).
    ///
    /// With a server-side store every request still loads its session from
    /// the store. When the stored bytes, version and expiry equal those of a
    /// kept entry, the request reuses that entry's decoded data instead of
    /// decoding again. With the cookie store a request whose sealed cookie
    /// equals a kept one skips the decryption and the decode; the expiry
    /// and revocation checks still run. Either way a request copies the
    /// data only if it changes the session. Each entry holds one decoded
    /// session (and, for the cookie store, its cookie). Sessions whose
    /// stored form or cookie is over 2 KiB are not kept, which bounds the
    /// cache at about `slots` times (2 KiB plus one decoded session).
    ///
    /// # Panics
    ///
    /// When called after the layer was cloned.
    pub fn record_cache(mut self, slots: usize) -> Self {
        let shared = self.shared_mut();
        (shared.records, shared.sealed) = record_caches(&shared.backend, slots);
        self
    }

    /// Re-checks every loaded, signed-in session against the source of
    /// truth, such as the user table, before the handler sees it (default
    /// none).
    ///
    /// Roles and other facts copied into the session at login go stale when
    /// they change elsewhere. With a hook, a revoked role is refused on the
    /// very next request, and a granted role takes effect with a new session
    /// id. The hook runs once per request that loads a signed-in session, so
    /// keep it to one cheap lookup.
    ///
    /// The closure receives the data and returns a future that owns what it
    /// needs:
    ///
    /// ```
    /// use std::{collections::HashMap, sync::{Arc, Mutex}};
    /// use session_axum::{MemoryStore, Revalidation, Session, SessionConfig, SessionLayer};
    ///
    /// #[derive(Session, Default, Clone, serde::Serialize, serde::Deserialize)]
    /// struct UserSession {
    ///     #[session(identity)]
    ///     user: Option<String>,
    ///     #[session(roles)]
    ///     roles: Vec<String>,
    /// }
    ///
    /// let roles_by_user: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    /// let config = SessionConfig::development([9u8; 32]).build().unwrap();
    /// let layer = SessionLayer::<UserSession>::new(MemoryStore::default(), config).revalidate_with(
    ///     move |session: &UserSession| {
    ///         let current = session.user.as_ref().and_then(|user| roles_by_user.lock().unwrap().get(user).cloned());
    ///         let mut updated = session.clone();
    ///         async move {
    ///             match current {
    ///                 None => Revalidation::Invalid,
    ///                 Some(roles) if roles == updated.roles => Revalidation::Valid,
    ///                 Some(roles) => {
    ///                     updated.roles = roles;
    ///                     Revalidation::Update(updated)
    ///                 }
    ///             }
    ///         }
    ///     },
    /// );
    /// ```
    ///
    /// # Panics
    ///
    /// When called after the layer was cloned.
    pub fn revalidate_with<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(&T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Revalidation<T>> + Send + 'static,
    {
        let hook: Revalidator<T> = Arc::new(move |data: &T| Box::pin(hook(data)));
        self.shared_mut().revalidator = Some(hook);
        self
    }

    /// Returns the configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.shared.config
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<T>> {
        &self.shared
    }

    /// Waits until no request is saving its session, then shuts the store
    /// down. Call it after `axum::serve(..).with_graceful_shutdown(..)`
    /// returns, so that the last writes and the store's background tasks
    /// finish before the process exits.
    ///
    /// # Errors
    ///
    /// The store's error if its shutdown fails.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.shared.in_flight.wait_idle().await;
        match &self.shared.backend {
            Backend::Server(store) => store.shutdown().await,
            Backend::Cookie(_) => Ok(()),
        }
    }
}

impl<S, T: SessionData> Layer<S> for SessionLayer<T> {
    type Service = SessionService<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Builds the record caches of a backend: the one it uses gets `slots`.
fn record_caches<T>(backend: &Backend, slots: usize) -> (RecordCache<T>, SealedCache<T>) {
    match backend {
        Backend::Server(_) => (RecordCache::new(slots), SealedCache::new(0)),
        Backend::Cookie(_) => (RecordCache::new(0), SealedCache::new(slots)),
    }
}

/// The service produced by [`SessionLayer`].
pub struct SessionService<S, T> {
    inner: S,
    shared: Arc<Shared<T>>,
}

impl<S: Clone, T> Clone for SessionService<S, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, T> fmt::Debug for SessionService<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, T> Service<Request> for SessionService<S, T>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    T: SessionData,
{
    type Response = Response;
    type Error = S::Error;
    type Future = SessionFuture<S::Future, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let in_flight = InFlightToken::enter(self.shared.clone());
        let handle = Arc::new(SessionHandle::new(self.shared.clone()));
        request
            .extensions_mut()
            .insert(HandleExtension(handle.clone()));

        // Take the service that was driven to readiness, leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        SessionFuture {
            step: Step::Inner {
                future: inner.call(request),
            },
            handle: Some(handle),
            _in_flight: in_flight,
        }
    }
}

type FinishFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of [`SessionService`]: the inner service's
    /// response, then the session save when the request loaded a session.
    pub struct SessionFuture<F, T: SessionData> {
        #[pin]
        step: Step<F>,
        handle: Option<Arc<SessionHandle<T>>>,
        _in_flight: InFlightToken<T>,
    }
}

pin_project_lite::pin_project! {
    #[project = StepProjection]
    enum Step<F> {
        Inner { #[pin] future: F },
        Finish { future: FinishFuture },
    }
}

impl<F, E, T> Future for SessionFuture<F, T>
where
    F: Future<Output = Result<Response, E>>,
    T: SessionData,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.step.as_mut().project() {
                StepProjection::Inner { future } => {
                    let response = std::task::ready!(future.poll(cx))?;
                    let Some(handle) = this.handle.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    // A request that never touched its session, or only read
                    // it, has nothing to save and skips the boxed save future.
                    if !handle.is_loaded() || handle.release_if_clean() {
                        return Poll::Ready(Ok(response));
                    }
                    let future: FinishFuture =
                        Box::pin(async move { handle.finish(response).await });
                    this.step.set(Step::Finish { future });
                }
                StepProjection::Finish { future } => return future.as_mut().poll(cx).map(Ok),
            }
        }
    }
}

impl<F, T: SessionData> fmt::Debug for SessionFuture<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionFuture").finish_non_exhaustive()
    }
}

/// Counts a request as in flight from `call` until its future is dropped.
struct InFlightToken<T> {
    shared: Arc<Shared<T>>,
}

impl<T> InFlightToken<T> {
    fn enter(shared: Arc<Shared<T>>) -> Self {
        shared.in_flight.enter();
        Self { shared }
    }
}

impl<T> Drop for InFlightToken<T> {
    fn drop(&mut self) {
        self.shared.in_flight.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_requests_in_flight() {
        let in_flight = Arc::new(InFlight::default());
        in_flight.enter();

        let waiter = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.wait_idle().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a request is still in flight");

        in_flight.leave();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes once the last request ends")
            .unwrap();
    }

    #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    struct Empty;

    impl SessionData for Empty {
        fn identity(&self) -> Option<String> {
            None
        }
    }

    #[tokio::test]
    async fn dropped_future_leaves_nothing_in_flight() {
        let config = SessionConfig::development([3u8; 32]).build().unwrap();
        let layer = SessionLayer::<Empty>::new(session_core::MemoryStore::default(), config);
        let inner = tower::service_fn(|_request: Request| async {
            Ok::<_, std::convert::Infallible>(Response::new(axum::body::Body::empty()))
        });
        let mut service = layer.layer(inner);

        let future = service.call(Request::new(axum::body::Body::empty()));
        assert_eq!(layer.shared.in_flight.count.load(Ordering::SeqCst), 1);
        drop(future);

        tokio::time::timeout(Duration::from_secs(5), layer.shutdown())
            .await
            .expect("shutdown does not wait for a dropped request")
            .unwrap();
    }

    #[tokio::test]
    async fn idle_layer_shuts_down_at_once() {
        let in_flight = InFlight::default();
        in_flight.enter();
        in_flight.leave();
        tokio::time::timeout(Duration::from_secs(5), in_flight.wait_idle())
            .await
            .expect("nothing in flight");
    }
}
