//! Opening a connection to a node or a sentinel: a TCP, TLS (the crate's shared
//! [`TlsConfig`](crate::tls::TlsConfig)) or Unix-socket stream, handed to redis-rs, which logs
//! in (`HELLO`/`AUTH`, `SELECT`) with this connection's credentials.
//!
//! The pool opens the streams itself rather than through `redis::Client`: one rustls
//! configuration (ring provider) built at [`build`](super::SplitPoolBuilder::build) and shared
//! by every connection, no process-wide crypto provider, the server-name override applied to
//! every kind of connection (shared, dedicated, pub/sub, Sentinel), and errors that say which
//! step failed (connect, TLS handshake, login).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, RedisConnectionInfo, RedisError, RedisResult};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::config::NodeAddr;
use crate::resolve::Name;
use crate::resolve::name::connect_any;

/// The TLS settings of a pool, loaded: the crate's [`TlsConfig`](crate::tls::TlsConfig) with
/// feature `tls`; without it there is none (a pool asking for TLS is refused at build).
#[cfg(feature = "tls")]
pub(crate) type Tls = crate::tls::TlsConfig;

/// Without feature `tls` no pool has TLS settings.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug)]
pub(crate) enum Tls {}

/// TLS options as given to the builder.
#[cfg(feature = "tls")]
pub(crate) type TlsOptions = crate::tls::TlsOptions;

/// Without feature `tls` no builder has TLS options.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug)]
pub(crate) enum TlsOptions {}

/// Loads `options` (the defaults when `None`: platform roots, full verification) for a pool
/// that asked for TLS; without feature `tls`, a refusal naming `field`.
pub(crate) fn load_tls(
    options: Option<&TlsOptions>,
    field: &'static str,
) -> Result<Tls, crate::error::ConfigError> {
    #[cfg(feature = "tls")]
    {
        let _ = field;
        options.cloned().unwrap_or_default().load()
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = options;
        Err(crate::error::ConfigError::new(
            field,
            "TLS (`rediss://`) needs the `tls` feature of switchover",
        ))
    }
}

/// The start of the message of a failed TLS handshake, which [`is_tls_failure`] looks for.
const TLS_FAILED: &str = "TLS handshake with ";
/// The message of a plaintext connection to a TLS-only port.
const TLS_ONLY: &str = "answers TLS only";

/// How to reach one node or sentinel.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    addr: NodeAddr,
    tls: Option<Tls>,
    /// For a host name: its addresses, looked up within `lookup` when never resolved.
    name: Option<(Arc<Name>, Duration)>,
}

impl Connector {
    /// `tls` is ignored for a Unix socket.
    pub(crate) fn new(addr: &NodeAddr, tls: Option<&Tls>) -> Self {
        Connector {
            addr: addr.clone(),
            tls: tls.filter(|_| !addr.is_unix()).cloned(),
            name: None,
        }
    }

    /// Connects to the addresses of `name` (the host name of `addr`) instead of letting the
    /// system look it up, the first lookup within `lookup`.
    pub(crate) fn with_name(mut self, name: Option<Arc<Name>>, lookup: Duration) -> Self {
        if !self.addr.is_unix() {
            self.name = name.map(|n| (n, lookup));
        }
        self
    }

    /// The TCP stream to the node: to its name's current addresses, in order.
    async fn tcp(&self) -> io::Result<TcpStream> {
        match &self.name {
            Some((name, lookup)) => {
                let (_, addrs) = name.addresses(*lookup).await?;
                connect_any(&addrs).await
            }
            None => TcpStream::connect((self.addr.host(), self.addr.port())).await,
        }
    }

    pub(crate) fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    /// A multiplexed connection logged in with `login`, within `limit` (connect and login),
    /// that ends at `cut`.
    pub(crate) async fn multiplexed(
        &self,
        login: &RedisConnectionInfo,
        config: &AsyncConnectionConfig,
        limit: Duration,
        cut: super::backend::Cut,
    ) -> RedisResult<MultiplexedConnection> {
        let open = async {
            let stream = self.stream().await?;
            let (conn, driver) =
                MultiplexedConnection::new_with_config(login, stream, config.clone())
                    .await
                    .map_err(|e| self.at_login(e))?;
            // Ends when the last clone of the connection is dropped, or at the cut: dropping
            // the driver fails every request pending on the connection at once.
            tokio::spawn(async move {
                tokio::select! {
                    () = driver => {}
                    () = cut => {}
                }
            });
            Ok(conn)
        };
        bounded(limit, open).await
    }

    /// A pub/sub connection logged in with `login`, within `limit`, that ends at `cut`.
    pub(crate) async fn pubsub(
        &self,
        login: &RedisConnectionInfo,
        limit: Duration,
        cut: super::backend::Cut,
    ) -> RedisResult<PubSub> {
        let open = async {
            let stream =
                super::cut_io::CutIo::new(self.stream().await?, cut, self.addr.to_string());
            PubSub::new(login, stream)
                .await
                .map_err(|e| self.at_login(e))
        };
        bounded(limit, open).await
    }

    async fn stream(&self) -> RedisResult<Stream> {
        if self.addr.is_unix() {
            return Ok(Stream::Unix(
                tokio::net::UnixStream::connect(self.addr.host()).await?,
            ));
        }
        let tcp = self.tcp().await?;
        match &self.tls {
            None => Ok(Stream::Tcp(tcp)),
            #[cfg(feature = "tls")]
            Some(tls) => self.handshake(tls, tcp).await,
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
        }
    }

    #[cfg(feature = "tls")]
    async fn handshake(&self, tls: &Tls, tcp: TcpStream) -> RedisResult<Stream> {
        let failed = |why: String| {
            RedisError::from(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{TLS_FAILED}{} failed: {why}", self.addr),
            ))
        };
        let name = tls
            .server_name(self.addr.host())
            .map_err(|e| failed(e.to_string()))?;
        match tls.connector().connect(name, tcp).await {
            Ok(s) => Ok(Stream::Tls(Box::new(s))),
            // rustls's own verdict (a certificate, an alert, not TLS at all): a TLS failure.
            Err(e) if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
                Err(failed(e.to_string()))
            }
            // The connection broke (a node killed mid-handshake): an I/O error like any other.
            Err(e) => Err(e.into()),
        }
    }

    /// The error of a failed login: over TLS, an alert the server sent once the handshake
    /// was done (TLS 1.3 reports a missing or refused client certificate then) is a TLS
    /// failure. (A plaintext connection the server cuts may be a TLS-only port, or a node
    /// going down: discovery tells them apart with [`mismatch`](Self::mismatch).)
    fn at_login(&self, e: RedisError) -> RedisError {
        if self.tls.is_some() && carries_rustls_error(&e) {
            return RedisError::from(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{TLS_FAILED}{} failed after the handshake: {e}", self.addr),
            ));
        }
        e
    }

    /// When a node that never answered stays silent: asks it in the other protocol, within
    /// `limit`. A plaintext node that answers a TLS `ClientHello` with a TLS record (a
    /// handshake or an alert) is a TLS-only port, which waits for a handshake; a TLS node
    /// that answers an inline `PING` in RESP is a plaintext port, which waits for the end of a
    /// command line. `Some` error saying so, else `None`.
    pub(crate) async fn mismatch(&self, limit: Duration) -> Option<RedisError> {
        if self.addr.is_unix() {
            return None;
        }
        let (ask, answers): (&[u8], fn(u8) -> bool) = match self.tls {
            None => (&CLIENT_HELLO, |b| matches!(b, 0x15 | 0x16)),
            Some(_) => (b"PING\r\n", |b| matches!(b, b'+' | b'-')),
        };
        // `try_write` / `try_read` on readiness: tokio's `io-util` is not a dependency.
        let probe = async {
            let tcp = self.tcp().await?;
            let mut sent = 0;
            while sent < ask.len() {
                tcp.writable().await?;
                match tcp.try_write(&ask[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            let mut first = [0u8; 1];
            loop {
                tcp.readable().await?;
                match tcp.try_read(&mut first) {
                    Ok(0) => return Ok(false),
                    Ok(_) => return Ok(answers(first[0])),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        };
        if !matches!(tokio::time::timeout(limit, probe).await, Ok(Ok(true))) {
            return None;
        }
        Some(match self.tls {
            None => tls_only(&self.addr, "no answer to plaintext"),
            Some(_) => RedisError::from(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{TLS_FAILED}{} failed: no answer to TLS, and the port answers plaintext: use `redis://` (or no `tls`)",
                    self.addr
                ),
            )),
        })
    }
}

/// A minimal TLS 1.2 `ClientHello` (one cipher suite, no extensions): any TLS server answers
/// it with a handshake record or an alert, a plaintext Redis with neither.
const CLIENT_HELLO: [u8; 50] = {
    // Record header: handshake, version 3.1, 45 bytes. Handshake header: ClientHello, 41
    // bytes. Version 3.3 (TLS 1.2), then 32 bytes of random (zeros).
    const HEAD: [u8; 11] = [
        0x16, 0x03, 0x01, 0x00, 0x2d, 0x01, 0x00, 0x00, 0x29, 0x03, 0x03,
    ];
    // No session id; one suite (ECDHE-RSA-AES128-GCM-SHA256); only the null compression.
    const TAIL: [u8; 7] = [0x00, 0x00, 0x02, 0xc0, 0x2f, 0x01, 0x00];
    let mut m = [0u8; 50];
    let mut i = 0;
    while i < HEAD.len() {
        m[i] = HEAD[i];
        i += 1;
    }
    let mut k = 0;
    while k < TAIL.len() {
        m[43 + k] = TAIL[k];
        k += 1;
    }
    m
};

/// The error for a plaintext connection to a TLS-only port.
fn tls_only(addr: &NodeAddr, seen: &str) -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!(
            "{addr} {TLS_ONLY} ({seen}, and a TLS handshake was answered): use `rediss://` or SplitPoolBuilder::tls"
        ),
    ))
}

/// `true` when a rustls error is somewhere in `e`'s sources.
fn carries_rustls_error(e: &RedisError) -> bool {
    #[cfg(feature = "tls")]
    {
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = source {
            if s.is::<rustls::Error>() {
                return true;
            }
            if let Some(io) = s.downcast_ref::<io::Error>()
                && io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
            source = s.source();
        }
        // redis-rs may keep only the words of an I/O error: rustls's alerts are recognisable.
        let shown = e.to_string();
        shown.contains("received fatal alert") || shown.contains("peer sent no certificates")
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = e;
        false
    }
}

async fn bounded<T>(limit: Duration, f: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| RedisError::from(io::Error::from(io::ErrorKind::TimedOut)))?
}

/// `true` for a failed TLS handshake (an untrusted or misnamed certificate, a client
/// certificate the server refused, a server that does not speak TLS), or a plaintext node
/// found to answer TLS only.
pub(crate) fn is_tls_failure(e: &RedisError) -> bool {
    let shown = e.to_string();
    shown.contains(TLS_FAILED) || shown.contains(TLS_ONLY)
}

/// A connection's byte stream.
pub(crate) enum Stream {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Unix(tokio::net::UnixStream),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $e,
            #[cfg(feature = "tls")]
            Stream::Tls($s) => $e,
            Stream::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_hello_lengths_add_up() {
        // Record length (bytes 3..5) and handshake length (bytes 6..9) match the message.
        let record = usize::from(u16::from_be_bytes([CLIENT_HELLO[3], CLIENT_HELLO[4]]));
        assert_eq!(record, CLIENT_HELLO.len() - 5);
        let hello = usize::from(CLIENT_HELLO[7]) << 8 | usize::from(CLIENT_HELLO[8]);
        assert_eq!(hello, CLIENT_HELLO.len() - 9);
        assert_eq!(CLIENT_HELLO[..3], [0x16, 0x03, 0x01]);
    }

    /// A listener that answers the first bytes it reads with `reply` (`None`: never answers).
    async fn server(reply: Option<&'static [u8]>) -> NodeAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = NodeAddr::from(listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                if let Some(reply) = reply {
                    let mut buf = [0u8; 64];
                    s.readable().await.unwrap();
                    let _ = s.try_read(&mut buf);
                    s.writable().await.unwrap();
                    let _ = s.try_write(reply);
                }
                held.push(s);
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_silent_plaintext_node_is_named_tls_only_only_when_it_answers_tls() {
        let limit = Duration::from_millis(200);
        // A TLS server answers a ClientHello with an alert (0x15) or a handshake (0x16).
        let tls_port = Connector::new(&server(Some(b"\x15\x03\x03\x00\x02\x02\x28")).await, None);
        let err = tls_port.mismatch(limit).await.expect("a TLS-only port");
        assert!(is_tls_failure(&err), "{err}");
        assert!(err.to_string().contains("rediss://"), "{err}");
        // A plaintext server's RESP error, or silence (a frozen node): not TLS.
        for reply in [Some(&b"-ERR Protocol error\r\n"[..]), None] {
            let plain = Connector::new(&server(reply).await, None);
            let started = tokio::time::Instant::now();
            assert!(plain.mismatch(limit).await.is_none());
            assert!(started.elapsed() < limit + Duration::from_millis(100));
        }
        // Nothing listening: not TLS either, at once.
        let gone = NodeAddr::new("127.0.0.1", 1).unwrap();
        assert!(Connector::new(&gone, None).mismatch(limit).await.is_none());
    }

    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn a_silent_tls_node_is_named_plaintext_when_it_answers_resp() {
        use crate::tls::{Roots, TlsOptions};
        let tls = TlsOptions::new().roots(Roots::Webpki).load().unwrap();
        let limit = Duration::from_millis(200);
        let plain = Connector::new(&server(Some(b"+PONG\r\n")).await, Some(&tls));
        let err = plain.mismatch(limit).await.expect("a plaintext port");
        assert!(is_tls_failure(&err), "{err}");
        assert!(err.to_string().contains("redis://"), "{err}");
        let silent = Connector::new(&server(None).await, Some(&tls));
        assert!(silent.mismatch(limit).await.is_none());
    }
}
