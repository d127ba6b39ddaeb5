use std::fmt;
use std::future::poll_fn;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls};

use super::error::Error;
use super::hosts::HostConfig;
use super::role::{ServerRole, setting_is_on};

/// What the background task driving a connection learned from the server since login.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    /// The role from the server's `in_hot_standby` / `default_transaction_read_only`
    /// `ParameterStatus` reports; 0 while unknown.
    role: AtomicU8,
    /// Whether the server reports its role (PostgreSQL 14 and later do).
    reports_role: AtomicBool,
    /// The connection task ended.
    closed: AtomicBool,
}

impl ConnState {
    pub(crate) fn role(&self) -> Option<ServerRole> {
        ServerRole::from_u8(self.role.load(Ordering::Acquire))
    }

    fn set_role(&self, role: ServerRole) {
        self.role.store(role.to_u8(), Ordering::Release);
    }

    pub(crate) fn reports_role(&self) -> bool {
        self.reports_role.load(Ordering::Relaxed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Reads the role from the parameters the server reported; `None` when it reports neither
/// `in_hot_standby` nor `default_transaction_read_only` (servers before PostgreSQL 14).
fn role_from_parameters<S, T>(conn: &tokio_postgres::Connection<S, T>) -> Option<ServerRole>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let standby = conn.parameter("in_hot_standby")?;
    let read_only = conn
        .parameter("default_transaction_read_only")
        .unwrap_or("off");
    Some(ServerRole::from_settings(
        setting_is_on(standby),
        setting_is_on(read_only),
    ))
}

/// What ends a connection's driver task before the server does: resolves with why (for the
/// log). See [`PgConnection::end_when`].
pub(crate) type End = Pin<Box<dyn Future<Output = &'static str> + Send>>;

/// How a driver task ended.
enum Ended {
    /// The server closed the connection, or the client was dropped.
    Server,
    /// The connection failed.
    Lost(tokio_postgres::Error),
    /// Its [`End`] resolved, with this reason.
    Cut(&'static str),
}

/// A pooled connection: a [`tokio_postgres::Client`] (it derefs to one) tagged with the host it
/// is on, the role that host reported, and the router generation it was made in.
///
/// The role is kept current without a round trip: PostgreSQL 14 and later report
/// `in_hot_standby` and `default_transaction_read_only` at login and whenever they change (a
/// promotion, a read-only fence after a configuration reload), and the task driving the
/// connection records every report.
pub struct PgConnection {
    client: Client,
    host: usize,
    host_name: Arc<str>,
    generation: u64,
    /// The epoch of its host name's addresses it went to (0: an IP address or a socket).
    addr_epoch: u64,
    /// Not handed out again past this (its maximum age; `None`: no limit).
    expires: Option<tokio::time::Instant>,
    state: Arc<ConnState>,
    /// Hands the driver task what ends it (see [`end_when`](Self::end_when)).
    end: Option<oneshot::Sender<End>>,
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("host", &self.host_name)
            .field("role", &self.state.role())
            .field("generation", &self.generation)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl PgConnection {
    /// The host this connection is on, as `host:port`.
    pub fn host(&self) -> &str {
        &self.host_name
    }

    /// The role the server last reported (`None` while unknown).
    pub fn role(&self) -> Option<ServerRole> {
        self.state.role()
    }

    /// The router generation the connection was made in. A failover bumps the generation and
    /// the pool never hands out a connection of an older one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `true` when the connection is known to be closed.
    pub fn is_closed(&self) -> bool {
        self.state.is_closed() || self.client.is_closed()
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, mutably (transactions need it).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    pub(crate) fn host_index(&self) -> usize {
        self.host
    }

    /// Moves a connection made while the generation changed to the current one, once it was
    /// found to fit it.
    pub(crate) fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// The epoch of its host name's addresses it went to (0: no host name).
    pub(crate) fn addr_epoch(&self) -> u64 {
        self.addr_epoch
    }

    /// Sets when the connection stops being handed out (its maximum age).
    pub(crate) fn set_expiry(&mut self, at: Option<tokio::time::Instant>) {
        self.expires = at;
    }

    /// `true` once the connection is past its maximum age.
    pub(crate) fn is_expired(&self) -> bool {
        crate::resolve::age::expired(self.expires)
    }

    pub(crate) fn host_arc(&self) -> &Arc<str> {
        &self.host_name
    }

    pub(crate) fn conn_state(&self) -> &ConnState {
        &self.state
    }

    /// Ends the connection when `end` resolves: its driver task stops, so every request
    /// pending on it (also one of a client checked out and being awaited) fails at once with
    /// tokio-postgres' "connection closed", and later ones too. Set once; later calls are
    /// ignored.
    pub(crate) fn end_when(&mut self, end: End) {
        if let Some(tx) = self.end.take() {
            let _ = tx.send(end);
        }
    }

    fn at_epoch(mut self, epoch: u64) -> Self {
        self.addr_epoch = epoch;
        self
    }

    /// Asks the server for its role with one query (the fallback for servers that do not
    /// report it), and records the answer.
    pub(crate) async fn query_role(&self) -> Result<ServerRole, tokio_postgres::Error> {
        let role = query_role(&self.client).await?;
        self.state.set_role(role);
        Ok(role)
    }
}

impl Deref for PgConnection {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PgConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// The fallback role query, for servers that do not report `in_hot_standby`.
pub(crate) async fn query_role(client: &Client) -> Result<ServerRole, tokio_postgres::Error> {
    let rows = client
        .simple_query(
            "SELECT pg_is_in_recovery()::text, current_setting('default_transaction_read_only')",
        )
        .await?;
    for msg in rows {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = msg {
            let in_recovery = row.get(0).is_some_and(setting_is_on);
            let read_only = row.get(1).is_some_and(setting_is_on);
            return Ok(ServerRole::from_settings(in_recovery, read_only));
        }
    }
    // A server that answers a SELECT with no row: treat as read-only rather than crash.
    Ok(ServerRole::ReadOnly)
}

/// Connects to one host and logs in, within `login` (TCP connect, TLS and login together; the
/// TCP connect alone is bounded by the host's `connect_timeout`), spawns the task that drives
/// the connection, and learns the server's role: from the `ParameterStatus` reports of the
/// login when the server sends them (PostgreSQL 14+), else with one query (bounded by `login`
/// too).
pub(crate) async fn connect(
    host_index: usize,
    host: &HostConfig,
    generation: u64,
    login: Duration,
) -> Result<PgConnection, Error> {
    connect_with(host_index, host, &host.config, generation, login).await
}

/// [`connect`] with `config` (the host's, with credentials from a provider) instead of the
/// host's own.
pub(crate) async fn connect_with(
    host_index: usize,
    host: &HostConfig,
    config: &tokio_postgres::Config,
    generation: u64,
    login: Duration,
) -> Result<PgConnection, Error> {
    let Some(dns) = &host.dns else {
        return connect_to(host_index, host, config, generation, login).await;
    };
    let started = tokio::time::Instant::now();
    let (epoch, addrs) = dns
        .addresses(login)
        .await
        .map_err(|e| Error::lookup(host.name.clone(), &e))?;
    // tokio-postgres connects to `hostaddr` and verifies TLS against `host`. Each address in
    // turn while the connect itself fails (as libpq does; `localhost` may answer on one
    // family only), all within `login`; a server's answer (a refused login) ends the turn.
    let mut last = None;
    for a in &addrs {
        let left = login.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        let mut c = config.clone();
        c.hostaddr(a.ip()).port(a.port());
        match connect_to(host_index, host, &c, generation, left).await {
            Ok(conn) => return Ok(conn.at_epoch(epoch)),
            Err(e) if e.reached_no_server() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::connect_timeout(host.name.clone(), login)))
}

/// Connects with `config` as it is (TLS per the host).
async fn connect_to(
    host_index: usize,
    host: &HostConfig,
    config: &tokio_postgres::Config,
    generation: u64,
    login: Duration,
) -> Result<PgConnection, Error> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &host.tls {
        let connecting = config.connect(tls.clone());
        return finish(host_index, host, generation, login, connecting).await;
    }
    finish(host_index, host, generation, login, config.connect(NoTls)).await
}

/// The rest of [`connect`], for either kind of stream.
async fn finish<S, T>(
    host_index: usize,
    host: &HostConfig,
    generation: u64,
    login: Duration,
    connecting: impl Future<
        Output = Result<(Client, tokio_postgres::Connection<S, T>), tokio_postgres::Error>,
    >,
) -> Result<PgConnection, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = match tokio::time::timeout(login, connecting).await {
        Err(_) => {
            return Err(Error::connect_timeout(host.name.clone(), login));
        }
        Ok(Err(source)) => {
            return Err(Error::connect(host.name.clone(), source));
        }
        Ok(Ok(pair)) => pair,
    };

    let state = Arc::new(ConnState::default());
    let reported = role_from_parameters(&connection);
    if let Some(role) = reported {
        state.set_role(role);
        state.reports_role.store(true, Ordering::Relaxed);
    }

    let (end_tx, end_rx) = oneshot::channel::<End>();
    tokio::spawn(drive(connection, state.clone(), host.name.clone(), end_rx));

    let conn = PgConnection {
        client,
        host: host_index,
        host_name: host.name.clone(),
        generation,
        addr_epoch: 0,
        expires: None,
        state,
        end: Some(end_tx),
    };
    if reported.is_none() {
        match tokio::time::timeout(login, conn.query_role()).await {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => {
                return Err(Error::connect(host.name.clone(), source));
            }
            Err(_) => {
                return Err(Error::connect_timeout(host.name.clone(), login));
            }
        }
    }
    Ok(conn)
}

/// The task driving one connection: polls it (recording each role the server reports) until
/// the server or the client ends it, or until the [`End`] handed over through `handed`
/// resolves. Dropping the connection then fails every request still pending on its client.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    state: Arc<ConnState>,
    host: Arc<str>,
    handed: oneshot::Receiver<End>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut handed = Some(handed);
    let mut end: Option<End> = None;
    let result = poll_fn(|cx| {
        if let Some(rx) = handed.as_mut()
            && let Poll::Ready(got) = Pin::new(rx).poll(cx)
        {
            handed = None;
            end = got.ok();
        }
        if let Some(e) = end.as_mut()
            && let Poll::Ready(why) = e.as_mut().poll(cx)
        {
            return Poll::Ready(Ended::Cut(why));
        }
        let polled = Pin::new(&mut connection).poll(cx);
        if state.reports_role()
            && let Some(role) = role_from_parameters(&connection)
        {
            state.set_role(role);
        }
        polled.map(|r| r.map_or_else(Ended::Lost, |()| Ended::Server))
    })
    .await;
    state.closed.store(true, Ordering::Release);
    drop(connection);
    match result {
        Ended::Server => {
            tracing::trace!(target: "switchover::postgres", host = %host, "connection closed")
        }
        Ended::Cut(why) => tracing::debug!(
            target: "switchover::postgres",
            host = %host,
            reason = why,
            "connection ended by the pool"
        ),
        Ended::Lost(e) => tracing::debug!(
            target: "switchover::postgres",
            host = %host,
            error = %e,
            "connection lost"
        ),
    }
}
