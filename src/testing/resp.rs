//! A minimal RESP2 client: enough to drive and observe the fixtures (`PING`, `INFO`, `ROLE`,
//! `REPLICAOF`, `SENTINEL ...`, `SET`/`GET`) without a Redis client crate; over TLS too with
//! feature `tls`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Error;
#[cfg(feature = "tls")]
use super::RedisTls;

/// The byte stream of a [`RespClient`]: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// How the fixtures reach a server: its address, and the TLS client when it speaks TLS only.
#[derive(Clone)]
pub(crate) struct Dial {
    addr: SocketAddr,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsConnector>,
}

impl fmt::Debug for Dial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dial")
            .field("addr", &self.addr)
            .field("tls", &self.is_tls())
            .finish()
    }
}

impl Dial {
    /// Plaintext TCP to `addr`.
    pub(crate) fn plain(addr: SocketAddr) -> Self {
        Dial {
            addr,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// TLS to `addr` with the fixtures' client of `tls` (`None`: plaintext).
    #[cfg(feature = "tls")]
    pub(crate) fn with_tls(addr: SocketAddr, tls: Option<&RedisTls>) -> Self {
        Dial {
            addr,
            tls: tls.map(RedisTls::connector),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Sends one command on a fresh connection (2 s timeout).
    pub(crate) async fn command<S: AsRef<[u8]>>(&self, args: &[S]) -> Result<Reply, Error> {
        RespClient::dial(self, Duration::from_secs(2))
            .await?
            .command(args)
            .await
    }

    /// Connects (TCP, then the TLS handshake when there is one).
    async fn open(&self) -> Result<Box<dyn Stream>, Error> {
        let addr = self.addr;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Error::io(format!("connecting to redis at {addr}"), e))?;
        // Nagle only adds delay to request/response traffic.
        let _ = stream.set_nodelay(true);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let name = rustls::pki_types::ServerName::from(addr.ip());
            let stream = tls
                .connect(name, stream)
                .await
                .map_err(|e| Error::io(format!("TLS handshake with redis at {addr}"), e))?;
            return Ok(Box::new(stream));
        }
        Ok(Box::new(stream))
    }
}

/// Default per-command timeout of [`RespClient`]: 5 seconds.
pub const DEFAULT_RESP_TIMEOUT: Duration = Duration::from_secs(5);

/// A reply from a Redis server or Sentinel. Error replies are returned as [`Error::Redis`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// A null bulk string or null array.
    Nil,
    /// A simple string such as `OK` or `PONG`.
    Status(String),
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Vec<u8>),
    /// An array.
    Array(Vec<Reply>),
}

impl Reply {
    /// The text of a status or (UTF-8) bulk reply.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Status(s) => Some(s),
            Self::Bulk(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value of an integer reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements of an array reply.
    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One connection speaking RESP2, with a per-command timeout.
///
/// This is a test helper, not a production client: no pipelining, no pooling, no reconnect.
/// It is handy to observe a [`FaultProxy`](super::FaultProxy) from the client side. With
/// feature `tls` it also speaks TLS ([`connect_tls`](Self::connect_tls)).
pub struct RespClient {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    timeout: Duration,
    dial: Dial,
}

impl fmt::Debug for RespClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RespClient")
            .field("dial", &self.dial)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RespClient {
    /// Connects to `addr`; the connect and every command time out after
    /// [`DEFAULT_RESP_TIMEOUT`] (5 s).
    pub async fn connect(addr: SocketAddr) -> Result<Self, Error> {
        Self::connect_with_timeout(addr, DEFAULT_RESP_TIMEOUT).await
    }

    /// Connects to `addr`; the connect and every command time out after `timeout`.
    pub async fn connect_with_timeout(addr: SocketAddr, timeout: Duration) -> Result<Self, Error> {
        Self::dial(&Dial::plain(addr), timeout).await
    }

    /// Connects to the TLS port at `addr` with the fixtures' TLS client of `tls` (it trusts the
    /// CA, verifies the IP address and presents the server certificate as its own); the
    /// connect, the handshake and every command time out after `timeout`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub async fn connect_tls(
        addr: SocketAddr,
        tls: &RedisTls,
        timeout: Duration,
    ) -> Result<Self, Error> {
        Self::dial(&Dial::with_tls(addr, Some(tls)), timeout).await
    }

    pub(crate) async fn dial(dial: &Dial, timeout: Duration) -> Result<Self, Error> {
        let addr = dial.addr();
        let stream = match tokio::time::timeout(timeout, dial.open()).await {
            Ok(s) => s?,
            Err(_) => {
                return Err(Error::timeout(
                    format!("a connection to {addr}"),
                    timeout,
                    "",
                ));
            }
        };
        Ok(Self {
            stream,
            buf: Vec::with_capacity(512),
            timeout,
            dial: dial.clone(),
        })
    }

    /// Sends one command and reads its reply. An error reply is returned as [`Error::Redis`];
    /// a timeout as [`Error::Timeout`] (after which the connection should be dropped).
    pub async fn command<S: AsRef<[u8]>>(&mut self, args: &[S]) -> Result<Reply, Error> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.roundtrip(args)).await {
            Ok(r) => r,
            Err(_) => Err(Error::timeout("a redis reply", timeout, "")),
        }
    }

    async fn roundtrip<S: AsRef<[u8]>>(&mut self, args: &[S]) -> Result<Reply, Error> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            let arg = arg.as_ref();
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| Error::io("sending a redis command", e))?;
        loop {
            if let Some((reply, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return reply;
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| Error::io("reading a redis reply", e))?;
            if n == 0 {
                return Err(Error::io(
                    "reading a redis reply",
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

type Parsed = Option<(Result<Reply, Error>, usize)>;

/// Parses one reply from the start of `buf`: `None` when incomplete, else the reply (an error
/// reply is `Err(Error::Redis)`) and the number of bytes used.
fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..end].split_first() else {
        return Err(Error::Protocol("empty line in a redis reply".into()));
    };
    let line = String::from_utf8_lossy(line).into_owned();
    let mut used = end + 2;
    let number = |line: &str| {
        line.parse::<i64>()
            .map_err(|_| Error::Protocol(format!("bad number {line:?} in a redis reply")))
    };
    let reply = match kind {
        b'+' => Ok(Reply::Status(line)),
        b'-' => Err(Error::Redis(line)),
        b':' => Ok(Reply::Int(number(&line)?)),
        b'$' => {
            let len = number(&line)?;
            if len < 0 {
                Ok(Reply::Nil)
            } else {
                let len = usize::try_from(len)
                    .map_err(|_| Error::Protocol("bulk length too large".into()))?;
                if buf.len() < used + len + 2 {
                    return Ok(None);
                }
                let bytes = buf[used..used + len].to_vec();
                used += len + 2;
                Ok(Reply::Bulk(bytes))
            }
        }
        b'*' => {
            let len = number(&line)?;
            if len < 0 {
                Ok(Reply::Nil)
            } else {
                let mut items = Vec::new();
                let mut first_error = None;
                for _ in 0..len {
                    match parse(&buf[used..])? {
                        None => return Ok(None),
                        Some((item, n)) => {
                            used += n;
                            // An error nested in an array becomes the error of the whole reply.
                            match item {
                                Ok(item) => items.push(item),
                                Err(e) => {
                                    first_error.get_or_insert(e);
                                }
                            }
                        }
                    }
                }
                match first_error {
                    Some(e) => Err(e),
                    None => Ok(Reply::Array(items)),
                }
            }
        }
        other => {
            return Err(Error::Protocol(format!(
                "unexpected redis reply type {:?}",
                char::from(other)
            )));
        }
    };
    Ok(Some((reply, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_and_partial_replies() {
        let full = b"*3\r\n+OK\r\n:42\r\n$5\r\nhello\r\n";
        for cut in 0..full.len() {
            assert!(parse(&full[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let (reply, used) = parse(full).unwrap().unwrap();
        assert_eq!(used, full.len());
        assert_eq!(
            reply.unwrap(),
            Reply::Array(vec![
                Reply::Status("OK".into()),
                Reply::Int(42),
                Reply::Bulk(b"hello".to_vec())
            ])
        );
        let (reply, _) = parse(b"-READONLY no\r\n").unwrap().unwrap();
        assert!(matches!(reply, Err(Error::Redis(m)) if m == "READONLY no"));
        let (reply, _) = parse(b"$-1\r\n").unwrap().unwrap();
        assert_eq!(reply.unwrap(), Reply::Nil);
        assert!(parse(b"?x\r\n").is_err());
    }
}
