//! Finding a Redis for the tests and benches: probe 127.0.0.1, or start a private server.
//!
//! The probe speaks RESP over a plain TCP connection, so xtask needs no Redis client.
//! Every connection goes to 127.0.0.1 only.

use std::env;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::process::{find_on_path, project_root};

/// Environment variable that replaces the probed port (6379).
pub(crate) const PROBE_PORT_ENV: &str = "XTASK_REDIS_PROBE_PORT";

/// Environment variable naming the redis-server binary that Redis tests may start.
pub(crate) const SERVER_BINARY_ENV: &str = "SESSION_TEST_REDIS_SERVER";

const DEFAULT_PORT: u16 = 6379;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const IO_TIMEOUT: Duration = Duration::from_millis(500);

/// Longest reply line read from the probed port. `+PONG\r\n` is 7 bytes, and Redis
/// error lines are short, so a longer first line is treated as "not a Redis".
const MAX_REPLY_BYTES: usize = 512;

/// PING attempts while a private server starts, `STARTUP_POLL` apart (5 s in total).
const STARTUP_ATTEMPTS: u32 = 50;
const STARTUP_POLL: Duration = Duration::from_millis(100);

/// Exit checks after `SHUTDOWN NOSAVE`, `STOP_POLL` apart (3 s), before the process is killed.
const STOP_ATTEMPTS: u32 = 30;
const STOP_POLL: Duration = Duration::from_millis(100);

/// Fresh ports tried for a private server, in case another process takes the free
/// port between choosing it and the server binding it.
const PORT_ATTEMPTS: u32 = 3;

/// Encodes a command as a RESP array of bulk strings.
fn encode_command(parts: &[&str]) -> Vec<u8> {
    let mut encoded = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        encoded.extend_from_slice(format!("${}\r\n{part}\r\n", part.len()).as_bytes());
    }
    encoded
}

/// The first line of a reply to PING.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PingReply {
    /// `+PONG`: a Redis that accepts commands without authentication.
    Pong,
    /// A RESP error such as `-NOAUTH Authentication required.`, without the `-`.
    Error(String),
    /// Any other line, so the listener is probably not a Redis.
    Unexpected(String),
}

/// Parses the reply to PING from the bytes read so far.
///
/// Returns `None` while no complete line (ending in CRLF) has arrived.
pub(crate) fn parse_ping_reply(bytes: &[u8]) -> Option<PingReply> {
    let end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
    let line = &bytes[..end];

    let reply = match line.split_first() {
        _ if line == b"+PONG" => PingReply::Pong,
        Some((b'-', message)) => PingReply::Error(String::from_utf8_lossy(message).into_owned()),
        _ => PingReply::Unexpected(String::from_utf8_lossy(line).into_owned()),
    };
    Some(reply)
}

/// The reason a port on 127.0.0.1 is not a usable Redis.
#[derive(Debug)]
pub(crate) enum ProbeError {
    Connect(io::Error),
    Io(io::Error),
    Closed,
    ReplyTooLong,
    ErrorReply(String),
    Unexpected(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Connect(error) => write!(f, "connection failed: {error}"),
            ProbeError::Io(error) => write!(f, "PING failed: {error}"),
            ProbeError::Closed => write!(f, "connection closed before a reply to PING"),
            ProbeError::ReplyTooLong => {
                write!(f, "reply to PING longer than {MAX_REPLY_BYTES} bytes")
            }
            ProbeError::ErrorReply(message) => write!(f, "PING returned an error: {message}"),
            ProbeError::Unexpected(line) => write!(f, "unexpected reply to PING: {line:?}"),
        }
    }
}

/// Sends PING to 127.0.0.1:`port` and succeeds only on `+PONG`.
pub(crate) fn ping(port: u16) -> Result<(), ProbeError> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream =
        TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).map_err(ProbeError::Connect)?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(ProbeError::Io)?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(ProbeError::Io)?;
    stream
        .write_all(&encode_command(&["PING"]))
        .map_err(ProbeError::Io)?;

    // Each read returns at least one byte or ends the loop, so the buffer bound
    // also bounds the number of reads.
    let mut reply = Vec::with_capacity(64);
    let mut chunk = [0u8; 64];
    loop {
        let read = stream.read(&mut chunk).map_err(ProbeError::Io)?;
        if read == 0 {
            return Err(ProbeError::Closed);
        }
        reply.extend_from_slice(&chunk[..read]);

        match parse_ping_reply(&reply) {
            Some(PingReply::Pong) => return Ok(()),
            Some(PingReply::Error(message)) => return Err(ProbeError::ErrorReply(message)),
            Some(PingReply::Unexpected(line)) => return Err(ProbeError::Unexpected(line)),
            None if reply.len() >= MAX_REPLY_BYTES => return Err(ProbeError::ReplyTooLong),
            None => {}
        }
    }
}

/// Parses the probe port override. `None` (variable unset) means 6379.
pub(crate) fn parse_probe_port(value: Option<&str>) -> Result<u16, String> {
    let Some(value) = value else {
        return Ok(DEFAULT_PORT);
    };
    match value.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!(
            "invalid {PROBE_PORT_ENV}={value:?}: expected a TCP port from 1 to 65535"
        )),
    }
}

fn probe_port() -> Result<u16, String> {
    match env::var(PROBE_PORT_ENV) {
        Ok(value) => parse_probe_port(Some(&value)),
        Err(env::VarError::NotPresent) => parse_probe_port(None),
        Err(env::VarError::NotUnicode(value)) => Err(format!(
            "invalid {PROBE_PORT_ENV}={value:?}: expected a TCP port from 1 to 65535"
        )),
    }
}

/// Returns the redis-server binary: `$SESSION_TEST_REDIS_SERVER` if set, otherwise
/// the one on PATH.
pub(crate) fn server_binary() -> Option<PathBuf> {
    match env::var_os(SERVER_BINARY_ENV) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => find_on_path("redis-server"),
    }
}

/// A Redis on 127.0.0.1 that replies PONG, either found running or started by xtask.
pub(crate) enum Redis {
    Existing { port: u16 },
    Private(PrivateRedis),
}

impl Redis {
    /// Returns the connection URL, for example `redis://127.0.0.1:6379`.
    pub(crate) fn url(&self) -> String {
        let port = match self {
            Redis::Existing { port } => *port,
            Redis::Private(server) => server.port,
        };
        format!("redis://127.0.0.1:{port}")
    }

    /// Returns the environment for `cargo test` and `cargo bench`: `REDIS_URL`, and
    /// `SESSION_TEST_REDIS_SERVER` when it is not set yet and redis-server is on PATH.
    pub(crate) fn env_for_tests(&self) -> Vec<(&'static str, String)> {
        let mut envs = vec![("REDIS_URL", self.url())];
        if env::var_os(SERVER_BINARY_ENV).is_none() {
            if let Some(binary) = find_on_path("redis-server") {
                envs.push((SERVER_BINARY_ENV, binary.display().to_string()));
            }
        }
        envs
    }
}

/// Returns a reachable Redis: the one on the probe port if it replies PONG, otherwise
/// a private redis-server started on a free port of 127.0.0.1.
///
/// # Errors
///
/// Returns a message if the probe port override is invalid, if no redis-server binary
/// is found, or if the private server does not start.
pub(crate) fn ensure() -> Result<Redis, String> {
    let port = probe_port()?;
    eprintln!("Sending PING to 127.0.0.1:{port}");

    let reason = match ping(port) {
        Ok(()) => {
            eprintln!("Using the Redis on 127.0.0.1:{port}, which replied PONG");
            return Ok(Redis::Existing { port });
        }
        Err(error) => error,
    };
    eprintln!("No usable Redis on 127.0.0.1:{port} ({reason}); starting a private redis-server");

    let binary = server_binary().ok_or_else(|| {
        format!(
            "nothing replied PONG on 127.0.0.1:{port} and redis-server was not found on PATH; \
             install Redis (for example `apt-get install redis-server`) or set {SERVER_BINARY_ENV} \
             to the redis-server binary"
        )
    })?;
    let base_dir = project_root().join("target").join("xtask-redis");
    PrivateRedis::start(&binary, &base_dir).map(Redis::Private)
}

/// A redis-server child process on 127.0.0.1, stopped when this value is dropped.
///
/// The working directory is removed after a clean stop. It is kept, with the log,
/// when the server failed to start or had to be killed.
pub(crate) struct PrivateRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    ready: bool,
}

impl PrivateRedis {
    fn start(binary: &Path, base_dir: &Path) -> Result<Self, String> {
        let mut attempt = 1;
        loop {
            let port = free_port()
                .map_err(|error| format!("could not find a free port on 127.0.0.1: {error}"))?;
            match Self::start_on(binary, base_dir, port) {
                Ok(server) => return Ok(server),
                Err(StartError::Exited(message)) if attempt < PORT_ATTEMPTS => {
                    eprintln!("{message}; retrying on another port");
                    attempt += 1;
                }
                Err(StartError::Exited(message) | StartError::Failed(message)) => {
                    return Err(message)
                }
            }
        }
    }

    fn start_on(binary: &Path, base_dir: &Path, port: u16) -> Result<Self, StartError> {
        let dir = base_dir.join(format!("port-{port}"));
        fs::create_dir_all(&dir).map_err(|error| {
            StartError::Failed(format!("could not create {}: {error}", dir.display()))
        })?;
        let log = dir.join("redis.log");
        let log_file = File::create(&log).map_err(|error| {
            StartError::Failed(format!("could not create {}: {error}", log.display()))
        })?;
        let log_file_for_stderr = log_file.try_clone().map_err(|error| {
            StartError::Failed(format!("could not open {}: {error}", log.display()))
        })?;

        let port_arg = port.to_string();
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", &port_arg])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_file_for_stderr)
            .spawn()
            .map_err(|error| {
                StartError::Failed(format!("could not start {}: {error}", binary.display()))
            })?;
        eprintln!(
            "Started {} on 127.0.0.1:{port} (pid {}, log {})",
            binary.display(),
            child.id(),
            log.display()
        );

        // From here on, dropping `server` stops the process, including on the error paths.
        let mut server = PrivateRedis {
            child,
            port,
            dir,
            log,
            ready: false,
        };
        server.wait_until_ready()?;
        server.ready = true;
        Ok(server)
    }

    fn wait_until_ready(&mut self) -> Result<(), StartError> {
        let mut last_error = None;
        for _ in 0..STARTUP_ATTEMPTS {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(StartError::Exited(format!(
                        "redis-server on port {} exited during start-up with {status}; see {}",
                        self.port,
                        self.log.display()
                    )));
                }
                Ok(None) => {}
                Err(error) => {
                    return Err(StartError::Failed(format!(
                        "could not check redis-server: {error}"
                    )))
                }
            }
            match ping(self.port) {
                Ok(()) => return Ok(()),
                Err(error) => last_error = Some(error),
            }
            thread::sleep(STARTUP_POLL);
        }

        let waited = STARTUP_POLL * STARTUP_ATTEMPTS;
        let last_error = last_error.map_or_else(String::new, |error| error.to_string());
        Err(StartError::Failed(format!(
            "redis-server on port {} timed out: no PONG within {waited:?} ({last_error}); see {}",
            self.port,
            self.log.display()
        )))
    }

    /// Removes the working directory, unless the server never became ready, in which
    /// case its log explains why.
    fn remove_dir_if_ready(&self) {
        if !self.ready {
            return;
        }
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {error}", self.dir.display());
        }
    }

    /// Blocks until the server exits, for example on Ctrl-C.
    pub(crate) fn wait_for_exit(&mut self) -> Result<(), String> {
        let status = self
            .child
            .wait()
            .map_err(|error| format!("could not wait for redis-server: {error}"))?;
        eprintln!("redis-server on port {} exited with {status}", self.port);
        Ok(())
    }

    /// Asks the server to shut down without saving, and kills it if it is still
    /// running after `STOP_ATTEMPTS` checks.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            self.remove_dir_if_ready();
            return;
        }
        let pid = self.child.id();

        // A successful SHUTDOWN closes the connection without a reply, so write
        // errors and the missing reply are expected and ignored here.
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        if let Ok(mut stream) = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            let _ = stream.write_all(&encode_command(&["SHUTDOWN", "NOSAVE"]));
        }

        for _ in 0..STOP_ATTEMPTS {
            if let Ok(Some(_)) = self.child.try_wait() {
                eprintln!(
                    "Stopped private redis-server on port {} (pid {pid})",
                    self.port
                );
                self.remove_dir_if_ready();
                return;
            }
            thread::sleep(STOP_POLL);
        }

        let waited = STOP_POLL * STOP_ATTEMPTS;
        eprintln!(
            "Private redis-server on port {} (pid {pid}) still runs {waited:?} after SHUTDOWN NOSAVE, so killing it",
            self.port
        );
        if let Err(error) = self.child.kill() {
            eprintln!("could not kill redis-server (pid {pid}): {error}");
        }
        if let Err(error) = self.child.wait() {
            eprintln!("could not wait for redis-server (pid {pid}): {error}");
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A failure to start a private redis-server.
enum StartError {
    /// The process exited during start-up, for example because another process took
    /// the port first, so trying another port may help.
    Exited(String),
    /// Any other failure, which another port would not fix.
    Failed(String),
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_ping_and_shutdown() {
        assert_eq!(encode_command(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode_command(&["SHUTDOWN", "NOSAVE"]),
            b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n"
        );
    }

    #[test]
    fn parse_pong() {
        assert_eq!(parse_ping_reply(b"+PONG\r\n"), Some(PingReply::Pong));
    }

    #[test]
    fn parse_incomplete_reply() {
        assert_eq!(parse_ping_reply(b""), None);
        assert_eq!(parse_ping_reply(b"+PO"), None);
        assert_eq!(parse_ping_reply(b"+PONG"), None);
        assert_eq!(parse_ping_reply(b"+PONG\r"), None);
    }

    #[test]
    fn parse_error_reply() {
        assert_eq!(
            parse_ping_reply(b"-NOAUTH Authentication required.\r\n"),
            Some(PingReply::Error(
                "NOAUTH Authentication required.".to_owned()
            ))
        );
        assert_eq!(
            parse_ping_reply(b"-LOADING Redis is loading the dataset in memory\r\n"),
            Some(PingReply::Error(
                "LOADING Redis is loading the dataset in memory".to_owned()
            ))
        );
    }

    #[test]
    fn parse_unexpected_reply() {
        assert_eq!(
            parse_ping_reply(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"),
            Some(PingReply::Unexpected("HTTP/1.1 400 Bad Request".to_owned()))
        );
        // Lower case, or PONG as a bulk string, is not what Redis sends.
        assert_eq!(
            parse_ping_reply(b"+pong\r\n"),
            Some(PingReply::Unexpected("+pong".to_owned()))
        );
        assert_eq!(
            parse_ping_reply(b"$4\r\nPONG\r\n"),
            Some(PingReply::Unexpected("$4".to_owned()))
        );
    }

    #[test]
    fn parse_reads_only_first_line() {
        assert_eq!(parse_ping_reply(b"+PONG\r\n+OK\r\n"), Some(PingReply::Pong));
    }

    #[test]
    fn probe_port_override() {
        assert_eq!(parse_probe_port(None), Ok(6379));
        assert_eq!(parse_probe_port(Some("6390")), Ok(6390));
        assert_eq!(parse_probe_port(Some(" 1 ")), Ok(1));
        for invalid in ["", "0", "65536", "-1", "port", "6379x"] {
            let error = parse_probe_port(Some(invalid)).expect_err(invalid);
            assert!(error.contains(PROBE_PORT_ENV), "{error}");
            assert!(error.contains("expected a TCP port"), "{error}");
        }
    }

    /// Starts a one-connection server on 127.0.0.1 that checks for PING and sends `reply`.
    fn serve_once(reply: &'static [u8]) -> (u16, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept the probe");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("set read timeout");
            let mut request = vec![0u8; encode_command(&["PING"]).len()];
            stream.read_exact(&mut request).expect("read PING");
            stream.write_all(reply).expect("write reply");
            request
        });
        (port, server)
    }

    #[test]
    fn ping_accepts_pong() {
        let (port, server) = serve_once(b"+PONG\r\n");
        ping(port).expect("PONG is a usable Redis");
        assert_eq!(
            server.join().expect("server thread"),
            b"*1\r\n$4\r\nPING\r\n"
        );
    }

    #[test]
    fn ping_rejects_error_reply() {
        let (port, server) = serve_once(b"-NOAUTH Authentication required.\r\n");
        match ping(port) {
            Err(ProbeError::ErrorReply(message)) => {
                assert_eq!(message, "NOAUTH Authentication required.");
            }
            other => panic!("expected an error reply, got {other:?}"),
        }
        server.join().expect("server thread");
    }

    #[test]
    fn ping_rejects_closed_connection() {
        let (port, server) = serve_once(b"");
        assert!(matches!(ping(port), Err(ProbeError::Closed)));
        server.join().expect("server thread");
    }

    #[test]
    fn ping_rejects_port_without_listener() {
        let port = free_port().expect("free port");
        assert!(matches!(ping(port), Err(ProbeError::Connect(_))));
    }
}
