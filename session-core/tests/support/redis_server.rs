//! Private `redis-server` processes for tests, on free loopback ports, each
//! in its own temporary directory, killed when dropped.
//!
//! The binaries come from `$SESSION_TEST_REDIS_SERVER` and
//! `$SESSION_TEST_REDIS_CLI`, or `redis-server` and `redis-cli` on PATH.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use deadpool_redis::redis;

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Returns the URL of the shared Redis: `$REDIS_URL`, or the local default.
pub fn shared_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Returns a prefix no other test run uses, such as `test:3f9a...:`.
pub fn unique_prefix(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "test:{label}:{:016x}:{count}:",
        rand_u64() ^ u64::from(std::process::id())
    )
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let id = session_core::SessionId::random();
    bytes.copy_from_slice(&id.as_bytes()[..8]);
    u64::from_le_bytes(bytes)
}

fn binary(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

/// Opens a plain connection for the test's own commands.
pub fn admin(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).expect("valid Redis URL");
    client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap_or_else(|error| panic!("failed to connect to {url} for a test command: {error}"))
}

/// Deletes every key under `pattern` (a `SCAN MATCH` pattern) and returns
/// how many were deleted.
pub fn delete_matching(connection: &mut redis::Connection, pattern: &str) -> usize {
    let keys = scan(connection, pattern);
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL").arg(&keys).query(connection).unwrap();
    }
    keys.len()
}

/// Returns every key matching `pattern`.
pub fn scan(connection: &mut redis::Connection, pattern: &str) -> Vec<String> {
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    // SCAN visits the whole keyspace in a bounded number of calls.
    for _ in 0..1_000_000 {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1_000)
            .query(connection)
            .unwrap();
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// One `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a server with persistence off.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments, such as
    /// `["--timeout", "1"]`.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on_free_port(extra, false)
    }

    fn start_on_free_port(extra: &[&str], cluster: bool) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port(cluster);
            let mut server = Self {
                child: None,
                port,
                dir: temp_dir(port),
                args: extra.iter().map(|arg| (*arg).to_owned()).collect(),
            };
            if cluster {
                server.args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                    ]
                    .map(str::to_owned),
                );
            }
            match server.spawn() {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("failed to start redis-server: {last_error}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|error| error.to_string())?;
        let program = binary("SESSION_TEST_REDIS_SERVER", "redis-server");
        let port = self.port.to_string();
        let child = Command::new(&program)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--logfile", "redis.log"])
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                format!("{program} could not be run ({error}); install Redis or set SESSION_TEST_REDIS_SERVER")
            })?;
        self.child = Some(child);

        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited with {status}",
                    self.port
                ));
            }
            if self.ping() {
                return Ok(());
            }
            thread::sleep(POLL);
        }
        self.kill();
        Err(format!(
            "redis-server on port {} did not reply to PING in time",
            self.port
        ))
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(200))
        else {
            return false;
        };
        redis::cmd("PING")
            .query::<String>(&mut connection)
            .is_ok_and(|reply| reply == "PONG")
    }

    /// Returns the port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the URL `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Opens a connection for the test's own commands.
    pub fn admin(&self) -> redis::Connection {
        admin(&self.url())
    }

    /// Kills the server with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(error) = self.spawn() {
            panic!("failed to restart redis-server: {error}");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(port: u16) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "session-core-redis-{}-{port}-{count}",
        std::process::id()
    ))
}

/// Finds a free loopback port. A cluster node also needs `port + 10000`
/// for its bus.
fn free_port(cluster: bool) -> u16 {
    for _ in 0..1_000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        if !cluster {
            return port;
        }
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// Three cluster masters on free loopback ports, joined into one cluster.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters, joins them with `redis-cli --cluster create`
    /// and waits until every node reports `cluster_state:ok`.
    pub fn start() -> Self {
        Self::start_nodes(3, 0, &[])
    }

    /// Starts three masters with one replica each and a cluster node
    /// timeout of 1 s, so that a replica takes over within seconds of its
    /// master's death. Waits until every replica is in sync.
    pub fn start_with_replicas() -> Self {
        let cluster = Self::start_nodes(6, 1, &["--cluster-node-timeout", "1000"]);
        cluster.wait_for_replicas();
        cluster
    }

    fn start_nodes(count: usize, replicas: usize, extra: &[&str]) -> Self {
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| RedisServer::start_on_free_port(extra, true))
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();

        let program = binary("SESSION_TEST_REDIS_CLI", "redis-cli");
        let output = Command::new(&program)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| {
                panic!("{program} could not be run ({error}); install Redis or set SESSION_TEST_REDIS_CLI")
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );

        let cluster = Self { nodes };
        cluster.wait_until_ok();
        cluster
    }

    fn wait_until_ok(&self) {
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        let started = Instant::now();
        while started.elapsed() < CLUSTER_READY_TIMEOUT {
            let all_ok = self.nodes.iter().all(|node| {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut node.admin())
                    .unwrap_or_default();
                info.contains("cluster_state:ok") && info.contains(&known)
            });
            if all_ok {
                return;
            }
            thread::sleep(POLL);
        }
        panic!("the test cluster did not reach cluster_state:ok in {CLUSTER_READY_TIMEOUT:?}");
    }

    fn wait_for_replicas(&self) {
        let started = Instant::now();
        while started.elapsed() < CLUSTER_READY_TIMEOUT {
            let in_sync = self.nodes.iter().all(|node| {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut node.admin())
                    .unwrap_or_default();
                info.contains("role:master") || info.contains("master_link_status:up")
            });
            if in_sync {
                return;
            }
            thread::sleep(POLL);
        }
        panic!("the test cluster's replicas were not in sync in {CLUSTER_READY_TIMEOUT:?}");
    }

    /// Returns the cluster that other tests of this binary are using right
    /// now, or starts one. The cluster stops when the last test holding it
    /// drops it, so tests that run at the same time share one cluster
    /// without leaving processes behind. Tests that change the topology
    /// start their own with [`RedisCluster::start`].
    pub fn shared() -> Arc<Self> {
        static SHARED: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(Self::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    /// Returns the URL of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Returns the nodes, all masters.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

impl RedisCluster {
    /// Returns the hash slot of `key`, which may also be a channel name.
    pub fn slot_of(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.nodes[0].admin())
            .unwrap()
    }

    /// Returns the index in [`RedisCluster::nodes`] of the master that owns
    /// `slot`, as the first node that is running sees it.
    pub fn owner_of(&self, slot: u16) -> usize {
        let reply: Vec<redis::Value> = self
            .nodes
            .iter()
            .filter(|node| node.child.is_some())
            .find_map(|node| {
                let client = redis::Client::open(node.url()).ok()?;
                let mut connection = client
                    .get_connection_with_timeout(Duration::from_secs(1))
                    .ok()?;
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query(&mut connection)
                    .ok()
            })
            .expect("a running node answers CLUSTER SLOTS");
        let ranges: Vec<(u16, u16, u16)> = reply
            .into_iter()
            .map(|range| {
                let redis::Value::Array(fields) = range else {
                    panic!("unexpected CLUSTER SLOTS entry {range:?}");
                };
                let start: u16 = redis::from_redis_value_ref(&fields[0]).unwrap();
                let end: u16 = redis::from_redis_value_ref(&fields[1]).unwrap();
                let redis::Value::Array(master) = &fields[2] else {
                    panic!("unexpected CLUSTER SLOTS master {:?}", fields[2]);
                };
                let port: u16 = redis::from_redis_value_ref(&master[1]).unwrap();
                (start, end, port)
            })
            .collect();
        let (_, _, port) = ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .unwrap_or_else(|| panic!("no master owns slot {slot}"));
        self.nodes
            .iter()
            .position(|node| node.port() == *port)
            .unwrap_or_else(|| panic!("slot {slot} is owned by unknown port {port}"))
    }

    /// Returns the index of a replica of master `master`, if it has one.
    pub fn replica_of(&self, master: usize) -> Option<usize> {
        let port = format!("master_port:{}\r\n", self.nodes[master].port());
        self.nodes.iter().position(|node| {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut node.admin())
                .unwrap_or_default();
            info.contains("role:slave") && info.contains(&port)
        })
    }

    /// Kills node `index` with SIGKILL; its replica, if any, takes over
    /// after the cluster node timeout.
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Moves `slot` and its keys from its owner to the next master (of a
    /// cluster without replicas), the way
    /// `redis-cli --cluster reshard` does: `SETSLOT IMPORTING` and
    /// `MIGRATING`, `MIGRATE` of the keys, then `SETSLOT NODE` on the new
    /// owner, the old owner and the third master, in that order. Returns
    /// the indexes of the old and the new owner.
    pub fn move_slot(&self, slot: u16) -> (usize, usize) {
        let source = self.owner_of(slot);
        let target = (source + 1) % self.nodes.len();
        let mut admins: Vec<redis::Connection> =
            self.nodes.iter().map(RedisServer::admin).collect();
        let ids: Vec<String> = admins
            .iter_mut()
            .map(|admin| redis::cmd("CLUSTER").arg("MYID").query(admin).unwrap())
            .collect();

        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&ids[source])
            .query(&mut admins[target])
            .unwrap();
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&ids[target])
            .query(&mut admins[source])
            .unwrap();
        // A slot contains few keys in these tests, so one batch moves them all.
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(10_000)
            .query(&mut admins[source])
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[target].port())
                .arg("")
                .arg(0)
                .arg(5_000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut admins[source])
                .unwrap();
        }
        let third = (0..self.nodes.len())
            .find(|&index| index != source && index != target)
            .expect("three masters");
        for index in [target, source, third] {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&ids[target])
                .query(&mut admins[index])
                .unwrap();
        }
        (source, target)
    }

    /// Returns how many clients of master `index` are subscribed to the
    /// shard channel `channel` (`PUBSUB SHARDNUMSUB`).
    pub fn shard_subscribers(&self, index: usize, channel: &str) -> u64 {
        let reply: Vec<redis::Value> = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(channel)
            .query(&mut self.nodes[index].admin())
            .unwrap();
        redis::from_redis_value_ref(&reply[1]).unwrap()
    }
}

/// Deletes the keys under a prefix when the test ends, even when it fails.
pub struct Cleanup {
    url: String,
    pattern: String,
}

impl Cleanup {
    /// Watches the keys of `url` that start with `prefix`.
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            pattern: format!("{prefix}*"),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_matching(&mut admin(&self.url), &self.pattern);
    }
}
