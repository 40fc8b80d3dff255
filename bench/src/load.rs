//! Serving a scenario on 127.0.0.1 and driving it with keep-alive connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::{encode_request, Connection};
use crate::scenario::cookie_pair;
use crate::Route;

/// Highest latency the histograms record, 60 s in nanoseconds.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// How long shutdown waits for the server task before aborting it.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A scenario's app served on 127.0.0.1 by `axum::serve`.
#[derive(Debug)]
pub struct Server {
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `router` on an ephemeral port of 127.0.0.1.
    ///
    /// # Errors
    ///
    /// A message when the listener cannot bind.
    pub async fn start(router: Router) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|error| format!("could not bind 127.0.0.1:0: {error}"))?;
        let address = listener
            .local_addr()
            .map_err(|error| format!("could not read the listener address: {error}"))?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = stop.await;
            });
            if let Err(error) = serving.await {
                eprintln!("bench server on {address} failed: {error}");
            }
        });
        Ok(Self {
            address,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Returns the listening address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting, waits up to 5 s for open connections to close, then
    /// aborts the server task.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

/// A session created over TCP through `POST /login`.
#[derive(Debug, Clone)]
pub struct TcpLogin {
    /// The `Cookie` header value for later requests.
    pub cookie: String,
    /// Bytes of the `Set-Cookie` values that created it.
    pub set_cookie_bytes: usize,
}

/// Creates a session over a fresh connection to `address`.
///
/// `plain_cookie` is the cookie to use when the response sets none (plain
/// axum); `None` makes a missing `Set-Cookie` an error.
///
/// # Errors
///
/// A message with the status or socket error.
pub async fn login_over_tcp(
    address: SocketAddr,
    user: u64,
    plain_cookie: Option<&str>,
) -> Result<TcpLogin, String> {
    let mut connection = Connection::connect(address)
        .await
        .map_err(|error| format!("connecting to {address} failed: {error}"))?;
    let request = encode_request("POST", &format!("/login?user={user}"), None);
    let response = connection
        .send(&request)
        .await
        .map_err(|error| format!("POST /login failed: {error}"))?;
    if response.status != 200 {
        return Err(format!("POST /login returned {}", response.status));
    }
    let cookie = match (&response.first_set_cookie, plain_cookie) {
        (Some(set_cookie), _) => cookie_pair(set_cookie).to_owned(),
        (None, Some(plain)) => plain.to_owned(),
        (None, None) => return Err("POST /login sent no Set-Cookie".to_owned()),
    };
    Ok(TcpLogin {
        cookie,
        set_cookie_bytes: response.set_cookie_bytes,
    })
}

/// Duration and concurrency of one load run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LoadOptions {
    /// Concurrent keep-alive connections, each with its own session.
    pub connections: usize,
    /// Time before measuring starts, in which requests run unrecorded.
    #[serde(serialize_with = "serialize_seconds")]
    pub warm_up: Duration,
    /// Measured time.
    #[serde(serialize_with = "serialize_seconds")]
    pub duration: Duration,
}

fn serialize_seconds<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// Figures of one load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Requests completed in the measured window.
    pub requests: u64,
    /// Requests that failed or returned a status other than 200, in the whole run.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Requests per second over the measured window.
    pub requests_per_second: f64,
    /// Median latency in microseconds.
    pub p50_us: f64,
    /// 99th percentile latency in microseconds.
    pub p99_us: f64,
    /// Mean `Set-Cookie` bytes per response in the measured window.
    pub set_cookie_bytes_per_response: f64,
}

struct ConnectionTally {
    histogram: Histogram<u64>,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    set_cookie_bytes: u64,
    last_completion: Option<Instant>,
}

/// Drives `route` on `address` with one connection per cookie for the
/// warm-up and the measured duration, and returns the figures.
///
/// A connection that fails stops; its error is counted and the others go on.
pub async fn run(
    address: SocketAddr,
    route: Route,
    cookies: &[String],
    options: LoadOptions,
) -> LoadResult {
    let start = Instant::now();
    let measure_from = start + options.warm_up;
    let measure_until = measure_from + options.duration;
    let method = route.method();

    let mut tasks = Vec::with_capacity(cookies.len());
    for cookie in cookies {
        let request: Arc<[u8]> = encode_request(method.as_str(), route.path(), Some(cookie)).into();
        tasks.push(tokio::spawn(drive_connection(
            address,
            request,
            measure_from,
            measure_until,
        )));
    }

    let mut histogram = new_histogram();
    let mut requests = 0;
    let mut errors = 0;
    let mut first_error = None;
    let mut set_cookie_bytes = 0;
    let mut last_completion = measure_from;
    for task in tasks {
        let tally = match task.await {
            Ok(tally) => tally,
            Err(error) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("connection task failed: {error}"));
                continue;
            }
        };
        histogram
            .add(&tally.histogram)
            .expect("histograms with the same bounds can be added");
        requests += tally.requests;
        errors += tally.errors;
        set_cookie_bytes += tally.set_cookie_bytes;
        if first_error.is_none() {
            first_error = tally.first_error;
        }
        if let Some(completion) = tally.last_completion {
            last_completion = last_completion.max(completion);
        }
    }

    let elapsed = last_completion
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    LoadResult {
        requests,
        errors,
        first_error,
        requests_per_second: if elapsed > 0.0 {
            requests as f64 / elapsed
        } else {
            0.0
        },
        p50_us: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_us: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        set_cookie_bytes_per_response: if requests > 0 {
            set_cookie_bytes as f64 / requests as f64
        } else {
            0.0
        },
    }
}

async fn drive_connection(
    address: SocketAddr,
    request: Arc<[u8]>,
    measure_from: Instant,
    measure_until: Instant,
) -> ConnectionTally {
    let mut tally = ConnectionTally {
        histogram: new_histogram(),
        requests: 0,
        errors: 0,
        first_error: None,
        set_cookie_bytes: 0,
        last_completion: None,
    };
    let mut connection = match Connection::connect(address).await {
        Ok(connection) => connection,
        Err(error) => {
            tally.errors += 1;
            tally.first_error = Some(format!("connecting to {address} failed: {error}"));
            return tally;
        }
    };

    loop {
        let sent_at = Instant::now();
        if sent_at >= measure_until {
            break;
        }
        let response = match connection.send(&request).await {
            Ok(response) => response,
            Err(error) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| error.to_string());
                break;
            }
        };
        let done_at = Instant::now();
        if response.status != 200 {
            tally.errors += 1;
            tally
                .first_error
                .get_or_insert_with(|| format!("status {}", response.status));
            continue;
        }
        if sent_at >= measure_from {
            let nanos = done_at
                .duration_since(sent_at)
                .as_nanos()
                .min(u128::from(MAX_LATENCY_NS)) as u64;
            tally.histogram.saturating_record(nanos.max(1));
            tally.requests += 1;
            tally.set_cookie_bytes += response.set_cookie_bytes as u64;
            tally.last_completion = Some(done_at);
        }
    }
    tally
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
        .expect("1 ns to 60 s with 3 significant digits is a valid range")
}
