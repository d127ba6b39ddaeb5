//! The fault-injecting TCP proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Error;

/// How the proxy treats traffic. Set with [`FaultProxy::set_mode`]; the default is
/// [`Mode::Pass`].
///
/// A mode applies to new connections and, where it makes sense, to connections already open:
///
/// | mode | new connections | open connections |
/// |---|---|---|
/// | `Pass` | forwarded | forwarded |
/// | `Refuse` | refused (`ECONNREFUSED`: nothing listens on the port) | still forwarded |
/// | `Reset` | accepted, then reset (`RST`) | reset when the mode is set |
/// | `BlackHole` | accepted and read, never answered, kept open | bytes held in both directions |
/// | `Latency` | forwarded, replies delayed | replies delayed |
/// | `CutOnReply` | requests forwarded; cut when the server answers | cut when the server answers a request sent after the switch |
///
/// Black hole models a network partition: nothing is dropped. Bytes a client sends into the hole
/// are held (up to 1 MiB per new connection; after that the proxy stops reading and TCP
/// backpressure takes over) and delivered, in order, when the mode goes back to `Pass` or
/// `Latency`, as after a partition heals. A connection accepted in black-hole mode connects to the
/// upstream only when the hole closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Forward bytes both ways unchanged.
    #[default]
    Pass,
    /// Stop listening: new connections are refused by the kernel. Open connections keep working
    /// (use [`FaultProxy::reset_connections`] to cut them too).
    Refuse,
    /// Reset every open connection now and every new one as soon as it is accepted. The reset is
    /// a real TCP `RST` (`SO_LINGER` 0), so clients see "connection reset by peer".
    Reset,
    /// Accept and read, never answer, keep connections open.
    BlackHole,
    /// Delay every chunk the upstream sends by `delay` plus a uniformly random extra in
    /// `0..=jitter`. Requests are not delayed, so one request/response exchange takes at least
    /// `delay` longer. Chunks stay in order; a reply that arrives in several chunks is delayed
    /// once per chunk.
    Latency {
        /// Fixed delay added to each chunk.
        delay: Duration,
        /// Upper bound of the random extra delay (`Duration::ZERO` for none).
        jitter: Duration,
    },
    /// Forward client bytes to the upstream; as soon as the upstream answers a request the
    /// client sent after the mode was set, reset the client without passing the answer on and
    /// close the upstream side gracefully. The server executes the request but the client never
    /// sees the answer: the "did my `COMMIT` happen?" failure. Reply bytes of earlier requests
    /// that arrive before the next request still get through, and chunks already forwarded are
    /// not recalled.
    CutOnReply,
}

/// A TCP proxy on `127.0.0.1` (a free port) in front of one upstream address, with faults that
/// can be switched at run time.
///
/// Connections are counted ([`accepted`](Self::accepted), [`open`](Self::open)). Dropping the
/// proxy stops listening and closes every connection it holds (its tasks are aborted), so it can
/// be dropped from any context, including after a test panicked. It must be created inside a Tokio
/// runtime (with the `net` and `time` drivers enabled).
///
/// ```no_run
/// use std::time::Duration;
/// use switchover::testing::{FaultProxy, Mode};
///
/// # async fn demo(redis_addr: std::net::SocketAddr) -> Result<(), switchover::testing::Error> {
/// let proxy = FaultProxy::start(redis_addr).await?;
/// let client_addr = proxy.addr(); // point the client under test here
///
/// proxy.set_mode(Mode::BlackHole).await?; // client calls now hang until their timeout
/// proxy.set_mode(Mode::Latency { delay: Duration::from_millis(50), jitter: Duration::ZERO }).await?;
/// proxy.set_mode(Mode::Reset).await?; // open connections get RST, new ones too
/// proxy.set_mode(Mode::Pass).await?;
/// println!("{} accepted, {} open", proxy.accepted(), proxy.open());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode_tx: watch::Sender<Mode>,
    upstream_tx: watch::Sender<SocketAddr>,
    /// Bumped to reset every connection opened before the bump; dropping it ends every
    /// connection task.
    epoch_tx: watch::Sender<u64>,
    stats: Arc<Stats>,
    seed: Option<u64>,
    /// The accept loop, or while the proxy refuses connections, the parked port.
    accept: tokio::sync::Mutex<Listening>,
}

/// The listening side of a proxy.
#[derive(Debug, Default)]
struct Listening {
    /// The accept loop; `None` while the proxy refuses connections.
    task: Option<JoinHandle<()>>,
    /// While refusing: a socket bound to the proxy's port but not listening. The kernel refuses
    /// connections to it, and no other process (a fixture of a test running in parallel, say)
    /// can take the port in the meantime.
    parked: Option<TcpSocket>,
}

#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    open: AtomicU64,
}

/// What every task of one proxy shares.
#[derive(Debug, Clone)]
struct Ctx {
    mode: watch::Receiver<Mode>,
    upstream: watch::Receiver<SocketAddr>,
    epoch: watch::Receiver<u64>,
    stats: Arc<Stats>,
    seed: Option<u64>,
}

/// Bytes a connection accepted in black-hole mode reads and holds at most.
const MAX_HELD: usize = 1 << 20;
/// How long the proxy waits for the upstream to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl FaultProxy {
    /// Starts a proxy in [`Mode::Pass`] on a free port of `127.0.0.1`, forwarding to `upstream`.
    /// Latency jitter is drawn from an unseeded generator.
    pub async fn start(upstream: SocketAddr) -> Result<Self, Error> {
        Self::launch(upstream, None).await
    }

    /// Like [`start`](Self::start), with latency jitter drawn from generators seeded with `seed`
    /// (each connection gets its own generator, seeded with `seed` plus its connection number).
    pub async fn start_seeded(upstream: SocketAddr, seed: u64) -> Result<Self, Error> {
        Self::launch(upstream, Some(seed)).await
    }

    async fn launch(upstream: SocketAddr, seed: Option<u64>) -> Result<Self, Error> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::io("binding the fault proxy on 127.0.0.1", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the fault proxy address", e))?;
        let (mode_tx, _) = watch::channel(Mode::Pass);
        let (upstream_tx, _) = watch::channel(upstream);
        let (epoch_tx, _) = watch::channel(0u64);
        let proxy = Self {
            addr,
            mode_tx,
            upstream_tx,
            epoch_tx,
            stats: Arc::default(),
            seed,
            accept: tokio::sync::Mutex::new(Listening::default()),
        };
        let task = tokio::spawn(accept_loop(listener, proxy.ctx()));
        proxy.accept.lock().await.task = Some(task);
        Ok(proxy)
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            mode: self.mode_tx.subscribe(),
            upstream: self.upstream_tx.subscribe(),
            epoch: self.epoch_tx.subscribe(),
            stats: Arc::clone(&self.stats),
            seed: self.seed,
        }
    }

    /// The address clients should connect to (`127.0.0.1:port`). It stays the same for the
    /// proxy's whole life, also across [`Mode::Refuse`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port of [`addr`](Self::addr).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The upstream new connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        *self.upstream_tx.borrow()
    }

    /// Forwards new connections to `upstream` from now on (models a DNS or endpoint move).
    /// Open connections stay with the old upstream; call
    /// [`reset_connections`](Self::reset_connections) to move them too.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.upstream_tx.send_replace(upstream);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode_tx.borrow()
    }

    /// Switches the mode. When this returns, the mode is in force: after `Refuse` the port no
    /// longer accepts, after `Reset` every connection that was open has been sent its reset
    /// (the tasks act on it at their next poll, normally within microseconds).
    ///
    /// While refusing, the proxy keeps its port bound without listening, so no other process
    /// can take it. Fails only when leaving `Refuse` and the port cannot be listened on again
    /// (in practice only if it could not be kept bound); the proxy then stays in `Refuse`.
    pub async fn set_mode(&self, mode: Mode) -> Result<(), Error> {
        let mut accept = self.accept.lock().await;
        match (mode, accept.task.is_some()) {
            (Mode::Refuse, true) => {
                self.mode_tx.send_replace(mode);
                if let Some(task) = accept.task.take() {
                    task.abort();
                    // The listener is dropped, and the port closed, once the task is gone.
                    let _ = task.await;
                }
                // Keep the port: bound, not listening. Should that fail, the port is merely
                // free, and leaving `Refuse` binds it again if it still can.
                accept.parked = park(self.addr).ok();
            }
            (Mode::Refuse, false) => {}
            (_, false) => {
                let listener = match accept.parked.take() {
                    Some(socket) => socket.listen(1024),
                    None => TcpListener::bind(self.addr).await,
                }
                .map_err(|e| {
                    Error::io(format!("binding the fault proxy again on {}", self.addr), e)
                })?;
                self.mode_tx.send_replace(mode);
                accept.task = Some(tokio::spawn(accept_loop(listener, self.ctx())));
            }
            (_, true) => {
                self.mode_tx.send_replace(mode);
            }
        }
        if mode == Mode::Reset {
            self.reset_connections();
        }
        Ok(())
    }

    /// Resets (`RST`) every connection open now, whatever the mode. New connections are not
    /// affected.
    pub fn reset_connections(&self) {
        self.epoch_tx.send_modify(|e| *e += 1);
    }

    /// How many connections the proxy has accepted since it started (including those it reset
    /// right away).
    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::Relaxed)
    }

    /// How many client connections are open through the proxy now.
    pub fn open(&self) -> u64 {
        self.stats.open.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self.accept.get_mut().task.take() {
            task.abort();
        }
        // Dropping `epoch_tx` with the proxy ends every connection task.
    }
}

/// A socket bound to `addr` (with `SO_REUSEADDR`, as the listener had) that does not listen.
fn park(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

async fn accept_loop(listener: TcpListener, ctx: Ctx) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::debug!(error = %e, "fault proxy accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let number = ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if matches!(*ctx.mode.borrow(), Mode::Reset | Mode::Refuse) {
            reset(&stream);
            continue;
        }
        let born = *ctx.epoch.borrow();
        tokio::spawn(connection(stream, ctx.clone(), number, born));
    }
}

/// Sets `SO_LINGER` to zero so that dropping the socket sends `RST` instead of `FIN`.
fn reset(stream: &TcpStream) {
    // `set_zero_linger` needs tokio 1.50; the deprecation is about non-zero linger blocking on
    // close, which zero linger never does.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Both sides closed cleanly.
    Closed,
    /// Reset by the proxy (mode, `reset_connections`), a failure, or shutdown.
    Abort,
    /// `CutOnReply`: the client is reset, the upstream is closed gracefully so that every
    /// request byte already forwarded is still read and executed by the server.
    Cut,
}

struct OpenGuard(Arc<Stats>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted connection; `born` is the reset epoch at the time it was accepted.
async fn connection(mut client: TcpStream, ctx: Ctx, number: u64, born: u64) {
    ctx.stats.open.fetch_add(1, Ordering::Relaxed);
    let _guard = OpenGuard(Arc::clone(&ctx.stats));
    let mut epoch = ctx.epoch.clone();
    let mut upstream = None;
    let end = tokio::select! {
        end = serve(&mut client, &mut upstream, &ctx, number) => end,
        // Also fires when the proxy is dropped (the sender is gone).
        _ = epoch.wait_for(|e| *e > born) => End::Abort,
    };
    match end {
        End::Closed => {}
        End::Abort => {
            reset(&client);
            if let Some(up) = &upstream {
                reset(up);
            }
        }
        End::Cut => {
            reset(&client);
            drop(client);
            if let Some(mut up) = upstream {
                // FIN, not RST: a reset could make the server drop a request it has received
                // but not read yet. Then drain what it still sends (closing a socket with unread
                // data would reset it), for a bounded time.
                let _ = up.shutdown().await;
                let mut sink = [0u8; 16 * 1024];
                let _ = tokio::time::timeout(CUT_DRAIN, async {
                    while matches!(up.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
            }
        }
    }
}

/// How long a cut connection's upstream is drained before it is dropped.
const CUT_DRAIN: Duration = Duration::from_secs(2);

async fn serve(
    client: &mut TcpStream,
    upstream_slot: &mut Option<TcpStream>,
    ctx: &Ctx,
    number: u64,
) -> End {
    let _ = client.set_nodelay(true);
    let mut mode = ctx.mode.clone();
    if *mode.borrow() == Mode::Reset {
        return End::Abort;
    }
    // A connection accepted into a black hole: read and hold, connect upstream only when the
    // hole closes.
    let mut held = Vec::new();
    while *mode.borrow_and_update() == Mode::BlackHole {
        let mut buf = [0u8; 16 * 1024];
        tokio::select! {
            read = client.read(&mut buf), if held.len() < MAX_HELD => match read {
                Ok(0) | Err(_) => return End::Abort,
                Ok(n) => held.extend_from_slice(&buf[..n]),
            },
            changed = mode.changed() => if changed.is_err() {
                return End::Abort;
            },
        }
    }
    let target = *ctx.upstream.borrow();
    let up = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(up)) => upstream_slot.insert(up),
        Ok(Err(e)) => {
            tracing::debug!(upstream = %target, error = %e, "fault proxy could not reach upstream");
            return End::Abort;
        }
        Err(_) => return End::Abort,
    };
    let _ = up.set_nodelay(true);
    if !held.is_empty() && up.write_all(&held).await.is_err() {
        return End::Abort;
    }
    drop(held);
    let rng = match ctx.seed {
        Some(seed) => SmallRng::seed_from_u64(seed.wrapping_add(number)),
        None => rand::make_rng(),
    };
    let (mut client_read, mut client_write) = client.split();
    let (mut up_read, mut up_write) = up.split();
    // Set once a request was forwarded under `CutOnReply`: only a reply after that is cut, so
    // the tail of an earlier reply still in flight when the mode was set gets through.
    let cut_armed = AtomicBool::new(false);
    let requests = pump(
        &mut client_read,
        &mut up_write,
        Direction::Request,
        ctx.mode.clone(),
        None,
        &cut_armed,
    );
    let replies = pump(
        &mut up_read,
        &mut client_write,
        Direction::Reply,
        ctx.mode.clone(),
        Some(rng),
        &cut_armed,
    );
    match tokio::try_join!(requests, replies) {
        Ok(_) => End::Closed,
        Err(end) => end,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to upstream.
    Request,
    /// Upstream to client.
    Reply,
}

/// Copies one direction until EOF (then half-closes the other side) or until a fault ends the
/// connection.
async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    direction: Direction,
    mut mode: watch::Receiver<Mode>,
    mut rng: Option<SmallRng>,
    cut_armed: &AtomicBool,
) -> Result<(), End> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await.map_err(|_| End::Abort)?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        // Decide what to do with this chunk under the current mode.
        loop {
            let current = *mode.borrow_and_update();
            match current {
                Mode::BlackHole => {
                    // Hold the chunk (and, by not reading, everything behind it) until the hole
                    // closes.
                    mode.changed().await.map_err(|_| End::Abort)?;
                    continue;
                }
                Mode::Reset => return Err(End::Abort),
                Mode::CutOnReply
                    if direction == Direction::Reply && cut_armed.load(Ordering::Acquire) =>
                {
                    return Err(End::Cut);
                }
                Mode::Latency { delay, jitter } if direction == Direction::Reply => {
                    let extra = match (&mut rng, jitter.is_zero()) {
                        (Some(rng), false) => {
                            let nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
                            Duration::from_nanos(rng.random_range(0..=nanos))
                        }
                        _ => Duration::ZERO,
                    };
                    tokio::time::sleep(delay.saturating_add(extra)).await;
                }
                _ => {}
            }
            break;
        }
        to.write_all(&buf[..n]).await.map_err(|_| End::Abort)?;
        if direction == Direction::Request && *mode.borrow() == Mode::CutOnReply {
            cut_armed.store(true, Ordering::Release);
        }
    }
}
