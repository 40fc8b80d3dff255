//! Counting the Redis work of a scenario: commands from `INFO commandstats`
//! and round trips from a counting proxy.
//!
//! `INFO commandstats` counts the commands that a Lua script runs as well as
//! the `EVALSHA` that started it, and it counts every client of the server,
//! so it gives the command mix but not the round trips. The proxy sits
//! between one scenario's store and Redis and counts round trips exactly: a
//! round trip starts when the client sends bytes while no reply is pending.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Pool};
use tower_sessions_redis_store::fred::types::InfoKind;

use crate::scenario::connect_fred;
use crate::{BenchApp, BenchEnv, Route, Scenario};

/// Requests sent before each measured batch: more than the connections of
/// either Redis client, so that each connection is open before counting.
const WARM_UP_REQUESTS: usize = 10;

/// Store round trips and Redis commands per request of one route.
#[derive(Debug, Clone, Serialize)]
pub struct RoundTripResult {
    /// The route measured.
    pub route: &'static str,
    /// Requests sent, one after another.
    pub requests: u64,
    /// Round trips between the store and Redis per request, counted by the proxy.
    pub round_trips_per_request: f64,
    /// Calls per request from `INFO commandstats`, per command. Includes
    /// commands run by scripts and by other clients of the same server.
    pub commands_per_request: BTreeMap<String, f64>,
}

/// Sends `requests` requests of each route, one after another, to the app
/// of `scenario` with its store connected through a [`RoundTripProxy`], and
/// returns the round trips and commands per request.
///
/// # Errors
///
/// A message when Redis is unreachable or a request fails.
pub async fn measure_round_trips(
    scenario: Scenario,
    env: &BenchEnv,
    requests: u64,
) -> Result<Vec<RoundTripResult>, String> {
    let upstream = redis_socket_address(&env.redis_url)?;
    let proxy = RoundTripProxy::start(upstream).await?;
    let proxied = BenchEnv {
        redis_url: redirect_redis_url(&env.redis_url, proxy.address())?,
    };
    let app = BenchApp::build(scenario, &proxied).await?;
    let stats = connect_fred(&env.redis_url).await?;
    let cookie = app.login(None).await?;

    let mut results = Vec::new();
    for route in Route::ALL {
        // Unmeasured requests first, so that one-time work such as loading a
        // script or opening each pooled connection is not counted.
        for _ in 0..WARM_UP_REQUESTS {
            app.check(route, &cookie).await?;
        }

        let stats_before = CommandStats::snapshot(&stats).await?;
        let trips_before = proxy.round_trips();
        for _ in 0..requests {
            app.check(route, &cookie).await?;
        }
        let trips = proxy.round_trips() - trips_before;
        let commands = CommandStats::snapshot(&stats).await?.since(&stats_before);

        let per_request = |count: u64| count as f64 / requests.max(1) as f64;
        results.push(RoundTripResult {
            route: route.name(),
            requests,
            round_trips_per_request: per_request(trips),
            commands_per_request: commands
                .into_iter()
                .map(|(name, calls)| (name, per_request(calls)))
                .collect(),
        });
    }

    app.delete_sessions(std::slice::from_ref(&cookie)).await?;
    Ok(results)
}

/// Calls per command name, from one `INFO commandstats` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandStats {
    calls: BTreeMap<String, u64>,
}

impl CommandStats {
    /// Reads `INFO commandstats` through `pool`.
    ///
    /// # Errors
    ///
    /// The Redis error as text.
    pub async fn snapshot(pool: &Pool) -> Result<Self, String> {
        let info: String = pool
            .info(Some(InfoKind::CommandStats))
            .await
            .map_err(|error| format!("INFO commandstats failed: {error}"))?;
        Ok(Self::parse(&info))
    }

    /// Parses lines such as `cmdstat_get:calls=12,usec=30,...`.
    pub fn parse(info: &str) -> Self {
        let mut calls = BTreeMap::new();
        for line in info.lines() {
            let Some(rest) = line.trim().strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let count = fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))
                .and_then(|value| value.parse::<u64>().ok());
            if let Some(count) = count {
                calls.insert(name.to_owned(), count);
            }
        }
        Self { calls }
    }

    /// Returns the calls made since `before`, per command, leaving out the
    /// `INFO` calls that took the snapshots and commands with no new calls.
    pub fn since(&self, before: &CommandStats) -> BTreeMap<String, u64> {
        self.calls
            .iter()
            .filter(|(name, _)| name.as_str() != "info")
            .filter_map(|(name, &after)| {
                let delta = after.saturating_sub(before.calls.get(name).copied().unwrap_or(0));
                (delta > 0).then(|| (name.clone(), delta))
            })
            .collect()
    }
}

/// A TCP proxy on 127.0.0.1 that forwards to one Redis and counts round trips.
#[derive(Debug)]
pub struct RoundTripProxy {
    address: SocketAddr,
    round_trips: Arc<AtomicU64>,
    accept_task: JoinHandle<()>,
}

impl RoundTripProxy {
    /// Starts the proxy in front of `upstream`, which must be a loopback address.
    ///
    /// # Errors
    ///
    /// A message when `upstream` is not on loopback or the listener cannot bind.
    pub async fn start(upstream: SocketAddr) -> Result<Self, String> {
        if !upstream.ip().is_loopback() {
            return Err(format!(
                "the Redis round-trip proxy forwards only to loopback addresses, not {upstream}"
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|error| format!("could not bind the Redis round-trip proxy: {error}"))?;
        let address = listener
            .local_addr()
            .map_err(|error| format!("could not read the proxy address: {error}"))?;
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        let accept_task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    match TcpStream::connect(upstream).await {
                        Ok(server) => forward(client, server, counter).await,
                        Err(error) => eprintln!(
                            "round-trip proxy: connecting to Redis at {upstream} failed: {error}"
                        ),
                    }
                });
            }
        });
        Ok(Self {
            address,
            round_trips,
            accept_task,
        })
    }

    /// Returns the proxy's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Returns the round trips counted since the proxy started.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

impl Drop for RoundTripProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Copies bytes both ways on one connection. A round trip is counted when
/// the client sends while no reply is pending; the first reply bytes end it.
///
/// NOTE: requests multiplexed on one connection while a reply is pending
/// count as one round trip, so the count is exact only when the measured
/// requests run one after another, as `loadgen` runs them.
async fn forward(mut client: TcpStream, mut server: TcpStream, round_trips: Arc<AtomicU64>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut awaiting_reply = false;
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_server = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut from_client) => {
                let Ok(n @ 1..) = read else { return };
                if !awaiting_reply {
                    round_trips.fetch_add(1, Ordering::SeqCst);
                    awaiting_reply = true;
                }
                if server.write_all(&from_client[..n]).await.is_err() {
                    return;
                }
            }
            read = server.read(&mut from_server) => {
                let Ok(n @ 1..) = read else { return };
                awaiting_reply = false;
                if client.write_all(&from_server[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Returns the `host:port` of a `redis://` URL, resolved.
///
/// # Errors
///
/// A message naming the URL when it has no host or does not resolve.
pub fn redis_socket_address(url: &str) -> Result<SocketAddr, String> {
    let (_, host_port) =
        split_redis_url(url).ok_or_else(|| format!("REDIS_URL {url:?} is not a redis:// URL"))?;
    let with_port = if host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .map_err(|error| format!("REDIS_URL host {with_port:?} does not resolve: {error}"))?
        .next()
        .ok_or_else(|| format!("REDIS_URL host {with_port:?} has no address"))
}

/// Returns `url` with its host and port replaced by `address`, keeping the
/// credentials and database number.
///
/// # Errors
///
/// A message naming the URL when it is not a `redis://` URL.
pub fn redirect_redis_url(url: &str, address: SocketAddr) -> Result<String, String> {
    let (credentials, host_port) =
        split_redis_url(url).ok_or_else(|| format!("REDIS_URL {url:?} is not a redis:// URL"))?;
    let rest = &url[url
        .find(host_port)
        .map(|start| start + host_port.len())
        .unwrap_or(url.len())..];
    Ok(format!("redis://{credentials}{address}{rest}"))
}

/// Splits `redis://[credentials@]host[:port][/db]` into the credentials
/// (with their `@`) and `host[:port]`.
fn split_redis_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("redis://")?;
    let authority = rest.split(['/', '?']).next()?;
    let (credentials, host_port) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    (!host_port.is_empty()).then_some((credentials, host_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_delta_skips_info_and_unchanged() {
        let before = CommandStats::parse("# Commandstats\r\ncmdstat_get:calls=10,usec=5\r\ncmdstat_info:calls=3,usec=1\r\ncmdstat_del:calls=2,usec=1\r\n");
        let after = CommandStats::parse("# Commandstats\r\ncmdstat_get:calls=15,usec=9\r\ncmdstat_info:calls=5,usec=2\r\ncmdstat_del:calls=2,usec=1\r\ncmdstat_evalsha:calls=4,usec=1\r\n");
        let delta = after.since(&before);
        assert_eq!(delta.get("get"), Some(&5));
        assert_eq!(delta.get("evalsha"), Some(&4));
        assert_eq!(delta.get("info"), None);
        assert_eq!(delta.get("del"), None);
    }

    #[test]
    fn url_is_redirected_keeping_credentials_and_db() {
        let proxy: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            redirect_redis_url("redis://127.0.0.1:6379", proxy).unwrap(),
            "redis://127.0.0.1:4000"
        );
        assert_eq!(
            redirect_redis_url("redis://:secret@localhost:6380/3", proxy).unwrap(),
            "redis://:secret@127.0.0.1:4000/3"
        );
        assert!(redirect_redis_url("http://127.0.0.1", proxy).is_err());
    }

    #[test]
    fn socket_address_defaults_the_port() {
        assert_eq!(
            redis_socket_address("redis://127.0.0.1").unwrap().port(),
            6379
        );
        assert_eq!(
            redis_socket_address("redis://127.0.0.1:7000/1")
                .unwrap()
                .port(),
            7000
        );
    }
}
