//! One HTTP/1.1 `GET` over a plain TCP connection, bounded in time and size: all the REST
//! client Patroni's API needs (it answers HTTP/1.0, closing the connection after the body).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest answer read (a `/cluster` body of a 3-member cluster is about 600 bytes).
pub(super) const MAX_RESPONSE: usize = 1 << 20;

/// Why a `GET` got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HttpError {
    /// No connection, a reset, or no complete answer within the timeout.
    Unreachable(String),
    /// Something that is not an HTTP answer we can read.
    Malformed(String),
}

/// A status and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

/// `GET path` from `addr` (`host:port`), within `timeout` for the connect, request and answer
/// together.
pub(super) async fn get(addr: &str, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    match tokio::time::timeout(timeout, exchange(addr, path)).await {
        Ok(answer) => answer,
        Err(_) => Err(HttpError::Unreachable(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

async fn exchange(addr: &str, path: &str) -> Result<Response, HttpError> {
    let io = |what: &str, e: std::io::Error| HttpError::Unreachable(format!("{what}: {e}"));
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| io("connect", e))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         User-Agent: switchover\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| io("send", e))?;
    let mut raw = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| io("read", e))?;
        if n == 0 {
            break;
        }
        if raw.len() + n > MAX_RESPONSE {
            return Err(HttpError::Malformed(format!(
                "answer longer than {MAX_RESPONSE} bytes"
            )));
        }
        raw.extend_from_slice(&chunk[..n]);
        if let Some(done) = complete(&raw) {
            raw.truncate(done);
            break;
        }
    }
    parse_response(&raw)
}

/// The length of a complete answer once its headers announce a `Content-Length` and the body
/// has arrived (else the answer ends when the server closes the connection).
fn complete(raw: &[u8]) -> Option<usize> {
    let head_end = find(raw, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let length = content_length(head)?.ok()?;
    let total = head_end.checked_add(length)?;
    (raw.len() >= total).then_some(total)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `Content-Length` header, if any (`Err` when it is not a number).
fn content_length(head: &str) -> Option<Result<usize, ()>> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().map_err(drop))
    })
}

/// Reads a whole answer: status line, headers, body (by `Content-Length`, else to the end).
/// Chunked bodies are refused (Patroni never sends them).
pub(super) fn parse_response(raw: &[u8]) -> Result<Response, HttpError> {
    let bad = |what: &str| HttpError::Malformed(what.to_owned());
    if raw.is_empty() {
        return Err(HttpError::Unreachable(
            "connection closed without an answer".into(),
        ));
    }
    let head_end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| bad("headers not UTF-8"))?;
    let status_line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not an HTTP/1.x answer"));
    }
    let status = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| bad("bad status line"))?;
    let chunked = head.split("\r\n").skip(1).any(|line| {
        line.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    if chunked {
        return Err(bad("chunked transfer encoding is not supported"));
    }
    let body = &raw[head_end + 4..];
    let body = match content_length(head) {
        None => body,
        Some(Err(())) => return Err(bad("bad Content-Length")),
        Some(Ok(n)) if n <= body.len() => &body[..n],
        Some(Ok(n)) => {
            return Err(HttpError::Unreachable(format!(
                "body cut at {} of {n} bytes",
                body.len()
            )));
        }
    };
    Ok(Response {
        status,
        body: body.to_vec(),
    })
}
