//! A minimal HTTP/1.1 keep-alive client for the load generator.
//!
//! It writes prepared request bytes and reads one response at a time,
//! framed by `Content-Length`, which axum sets on every response the
//! benchmark routes return. Chunked responses are rejected as an error.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted, in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Largest response body accepted, in bytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Most response headers parsed.
const MAX_HEADERS: usize = 32;

/// Failure of a request on a connection.
#[derive(Debug)]
pub enum ClientError {
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// The server closed the connection before a whole response arrived.
    Closed,
    /// The response could not be parsed or is not framed by `Content-Length`.
    Malformed(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(error) => write!(f, "socket error: {error}"),
            ClientError::Closed => f.write_str("connection closed before a whole response arrived"),
            ClientError::Malformed(message) => write!(f, "malformed response: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> Self {
        ClientError::Io(error)
    }
}

/// The parts of a response that the load generator keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSummary {
    /// Status code.
    pub status: u16,
    /// Total bytes of all `Set-Cookie` header values (without the header name).
    pub set_cookie_bytes: usize,
    /// The first `Set-Cookie` value, if any.
    pub first_set_cookie: Option<String>,
    /// Body length in bytes.
    pub body_len: usize,
}

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    /// Opens a connection to `address` with Nagle's algorithm off.
    ///
    /// # Errors
    ///
    /// The socket error.
    pub async fn connect(address: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Sends one request (complete HTTP/1.1 bytes) and reads its response.
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the socket fails or the response is malformed.
    pub async fn send(&mut self, request: &[u8]) -> Result<ResponseSummary, ClientError> {
        self.stream.write_all(request).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> Result<ResponseSummary, ClientError> {
        loop {
            if let Some((head_len, mut summary, content_length)) = parse_head(&self.buffer)? {
                let total = head_len + content_length;
                while self.buffer.len() < total {
                    self.fill().await?;
                }
                summary.body_len = content_length;
                self.buffer.drain(..total);
                return Ok(summary);
            }
            if self.buffer.len() > MAX_HEAD_BYTES {
                return Err(ClientError::Malformed(format!(
                    "response head longer than {MAX_HEAD_BYTES} bytes"
                )));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), ClientError> {
        let mut chunk = [0u8; 8192];
        let read = self.stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(ClientError::Closed);
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

/// Parses a complete response head from `bytes`. Returns `None` while the
/// head is incomplete, else its length, the summary and the body length.
fn parse_head(bytes: &[u8]) -> Result<Option<(usize, ResponseSummary, usize)>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(ClientError::Malformed(error.to_string())),
    };

    let status = response
        .code
        .ok_or_else(|| ClientError::Malformed("missing status code".to_owned()))?;
    let mut content_length = None;
    let mut set_cookie_bytes = 0;
    let mut first_set_cookie = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value)
                .map_err(|_| ClientError::Malformed("Content-Length is not UTF-8".to_owned()))?;
            let length = text
                .trim()
                .parse::<usize>()
                .map_err(|_| ClientError::Malformed(format!("invalid Content-Length {text:?}")))?;
            content_length = Some(length);
        } else if header.name.eq_ignore_ascii_case("set-cookie") {
            set_cookie_bytes += header.value.len();
            if first_set_cookie.is_none() {
                first_set_cookie = Some(String::from_utf8_lossy(header.value).into_owned());
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ClientError::Malformed(
                "chunked responses are not supported; the bench routes send Content-Length"
                    .to_owned(),
            ));
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY_BYTES {
        return Err(ClientError::Malformed(format!(
            "body of {content_length} bytes is over the {MAX_BODY_BYTES}-byte limit"
        )));
    }
    let summary = ResponseSummary {
        status,
        set_cookie_bytes,
        first_set_cookie,
        body_len: 0,
    };
    Ok(Some((head_len, summary, content_length)))
}

/// Encodes a request without a body. `cookie` is the `Cookie` header value.
pub fn encode_request(method: &str, path: &str, cookie: Option<&str>) -> Vec<u8> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(cookie) = cookie {
        request.push_str("Cookie: ");
        request.push_str(cookie);
        request.push_str("\r\n");
    }
    if method != "GET" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_with_cookies_is_summarised() {
        let bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nset-cookie: id=abc; Path=/\r\nset-cookie: x=1\r\n\r\nok";
        let (head_len, summary, body) = parse_head(bytes).unwrap().unwrap();
        assert_eq!(head_len, bytes.len() - 2);
        assert_eq!(body, 2);
        assert_eq!(summary.status, 200);
        assert_eq!(
            summary.set_cookie_bytes,
            "id=abc; Path=/".len() + "x=1".len()
        );
        assert_eq!(summary.first_set_cookie.as_deref(), Some("id=abc; Path=/"));
    }

    #[test]
    fn partial_head_waits_for_more() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
            .unwrap()
            .is_none());
    }

    #[test]
    fn chunked_response_is_rejected() {
        let bytes = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(matches!(parse_head(bytes), Err(ClientError::Malformed(_))));
    }

    #[test]
    fn post_request_has_empty_body() {
        let request = encode_request("POST", "/write", Some("id=v"));
        assert_eq!(
            request,
            b"POST /write HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: id=v\r\nContent-Length: 0\r\n\r\n"
                .to_vec()
        );
    }
}
