//! A reconnecting Postgres pool that always hands out a connection of the right role.
//!
//! After a failover, ordinary pools keep their connections to a node that is now a standby or
//! a fenced, read-only primary: `SELECT 1` health checks pass and every write fails with
//! SQLSTATE `25006` until the process restarts. [`FailoverPool`] follows the primary across
//! several hosts and never hands out a connection whose role does not match what was asked
//! for; its runner retries a closure after a failover only when that is safe.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use switchover::postgres::{FailoverPool, TargetRole};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = FailoverPool::builder()
//!     .connection_string("host=db-a,db-b port=5432 user=app password=secret dbname=shop")
//!     .read_role(TargetRole::PreferStandby)
//!     .acquire_timeout(Duration::from_secs(3))
//!     .build()?;
//!
//! // Existing code: a client on the primary.
//! let client = pool.get().await?;
//! client.execute("INSERT INTO events (kind) VALUES ($1)", &[&"signup"]).await?;
//! drop(client);
//!
//! // Reads from a standby when one is up.
//! let reader = pool.get_read().await?;
//! let n: i64 = reader.query_one("SELECT count(*) FROM events", &[]).await?.get(0);
//! println!("{n} events, read from {}", reader.host());
//!
//! // A transaction that survives a failover; `pool.idempotent()` also retries one that may
//! // have run.
//! pool.transaction(|tx| Box::pin(async move {
//!     tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = $1", &[&1_i64]).await?;
//!     tx.execute("UPDATE accounts SET balance = balance + 10 WHERE id = $1", &[&2_i64]).await?;
//!     Ok(())
//! }))
//! .await?;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! - **Roles without a round trip.** PostgreSQL 14 and later report `in_hot_standby` and
//!   `default_transaction_read_only` at login and whenever they change; every connection keeps
//!   what its server last reported (older servers are asked with one query). Each host's role
//!   is recorded on its endpoint in the [health tracker](crate::health).
//! - **One engine.** [`get`](FailoverPool::get), [`get_read`](FailoverPool::get_read),
//!   [`run`](FailoverPool::run) and [`transaction`](FailoverPool::transaction) go through the
//!   core's [runner](crate::route::Router::call): each attempt goes to the host the runner
//!   picks (the router's primary, or a host of the read role), its outcome and latency are
//!   recorded on that host, and a failure is retried per the policy.
//! - **Failover.** An error that means "this node is no longer what we thought" (see
//!   [`is_failover_error`]) asks the core's [re-discovery](crate::route::Rediscovery), which
//!   probes every host in parallel, switches the router to the writable primary (the
//!   generation grows by one) and keeps probing while the primary is in doubt; a healthy
//!   primary is re-checked every 5 s. A connection of an older generation (also one whose
//!   connect straddled a switch), on an unavailable host, or whose server changed role is never
//!   handed out again.
//! - **DNS-named endpoints** (an RDS or Aurora cluster endpoint): a host given by name is
//!   connected to at the addresses the pool's [resolver](FailoverPoolBuilder::resolver)
//!   gave last (as `hostaddr`, in order while none answers; TLS still verifies the name),
//!   looked up again at every
//!   re-discovery run and every [`resolve_interval`](FailoverPoolBuilder::resolve_interval)
//!   (5 s). When it changes, new connections go to the new address and the host's kept
//!   connection is replaced, so the next role check asks the new node; once it answers,
//!   every connection to the old address ends (idle and checked out, as in-flight
//!   cancellation below) and the host has the role the new node reported. Every connection
//!   also stops being handed out at its [maximum age](FailoverPoolBuilder::max_connection_age)
//!   (30 min, drawn up to 10 % less per connection). See [`crate::resolve`].
//! - **Liveness.** Every host that is up is asked its role every 200 ms (the
//!   [heartbeat](FailoverPoolBuilder::heartbeat), jittered, one round trip on a connection the
//!   pool keeps per host), within 300 ms. A frozen or partitioned primary (no error, only
//!   silence: a stopped process, a paused VM, dropped packets) is suspected at its first
//!   missed beat and re-discovery runs at once; a run does not wait for a host that stays
//!   silent past the heartbeat timeout, and the first host that answers as the writable
//!   primary wins. The first run of a new pool waits for no frozen host either, so `build()`
//!   and the first `get()` work during an outage.
//! - **In-flight cancellation.** Every connection to a host ends when the host is declared
//!   down, and every connection to the primary ends when the primary moves (the generation
//!   grows): pooled ones, connects under way, and those checked out by [`get`](FailoverPool::get)
//!   and being awaited. Their pending requests fail at once with tokio-postgres' "connection
//!   closed" (transient, may have executed, a failover signal). In
//!   [`transaction`](FailoverPool::transaction) a statement cut before `COMMIT` was rolled
//!   back and is retried on the new primary in the same call, a `COMMIT` cut in flight is
//!   [`ErrorKind::OutcomeUnknown`]; [`run`](FailoverPool::run) is retried when idempotent.
//! - **Slow is not dead.** With the heartbeat on, a step cut by the query timeout on a host
//!   whose heartbeat answers switches nothing, evicts nothing else, and puts nothing in doubt:
//!   it asks for a heartbeat now, whose verdict counts.
//! - **Two writable primaries** (a standby promoted while the old primary still takes writes)
//!   are decided deterministically, never by which answers first: within one cluster the
//!   higher timeline wins, else the current primary stays. Each set of hosts found writable
//!   together is reported once (again only after one of them was seen as something else): a
//!   `tracing` warning "two writable primaries" naming the hosts, their timelines and the one
//!   followed; a [`WritablePrimaries`](crate::observe::EventKind::WritablePrimaries) event in
//!   the [`timeline`](FailoverPool::timeline) with the same fields (hosts as `host:port`); the
//!   `switchover.writable_primaries` counter (feature `metrics`); and
//!   [`writable_primaries_detected`](FailoverPool::writable_primaries_detected).
//! - **Retry safety.** A failure before `COMMIT` was sent rolled back, so it is retried; a
//!   connection lost after `COMMIT` was sent is
//!   [`ErrorKind::OutcomeUnknown`], never a success or a plain failure.
//! - **Deadlines everywhere** ([`Timeouts`]); the defaults of every knob are on
//!   [`FailoverPoolBuilder`]:
//!
//! | path | bounded by (default) |
//! |---|---|
//! | [`get`](FailoverPool::get), [`get_read`](FailoverPool::get_read): waiting for a primary, a slot, connects, retries | acquire timeout (5 s) |
//! | one connect and login | login timeout (3 s; TCP connect 2 s), and ended at once when its host is declared down or the primary moves |
//! | [`run`](FailoverPool::run), [`transaction`](FailoverPool::transaction) as a whole | the retry policy's deadline (15 s) |
//! | each of their steps (`BEGIN`, the closure, `COMMIT`) | query timeout (10 s) |
//! | a statement on a connection from `get` whose host froze or was cut off | the heartbeat: the connection ends when the host is declared down or the primary moves (about 0.5 to 1 s with the defaults); with the heartbeat off, `tcp_user_timeout` (5 s) for unacknowledged data, keepalive (about 8 s) when idle |
//! | a statement on a connection from `get` on a live, slow server | none of ours: use the server's `statement_timeout` |
//! | the check of an idle connection | recycle timeout (1 s) |
//! | a heartbeat, and any probe of the health tracker | heartbeat timeout (300 ms; with the heartbeat off, the probe timeout) |
//! | one host's answer in a re-discovery run | probe timeout (2 s); the run decides without a host silent for the heartbeat timeout |
//! | waiting for a primary to be confirmed | twice the probe timeout plus the re-discovery interval (4.05 s), and always the caller's own deadline |
//!
//! # TLS, credentials and Unix sockets
//!
//! | | how | feature |
//! |---|---|---|
//! | TLS | libpq's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`; see [`SslMode`]) with `sslrootcert` (a PEM bundle such as the RDS global bundle, or `system`), `sslcert` and `sslkey`, in the key/value or URL form, or [`ssl_mode`](FailoverPoolBuilder::ssl_mode) and `tls` (for example `Roots::Webpki`) on the builder | `tls` |
//! | credentials | [`credentials`](FailoverPoolBuilder::credentials): a [`CredentialProvider`](crate::auth::CredentialProvider) asked for each new connection, cached, a rejected secret replaced once | — |
//! | Unix sockets | `host=/run/postgresql` (a host that starts with `/`): the socket `.s.PGSQL.<port>` in that directory, named so in errors and the topology | — |
//!
//! With `tls`, connections use rustls (ring provider) through `TlsConnector`: SNI and the
//! name check per host of a multi-host string (each host against its own name; a `hostaddr`
//! connects while the `host` is verified; an IP host against IP SANs), ALPN `postgresql`, and
//! SCRAM channel binding (`channel_binding=prefer|require`, `tls-server-end-point`).
//! `prefer` falls back to plaintext only when the server answers that it has no TLS, never
//! after a certificate or handshake error. `require` without a root certificate encrypts
//! without verifying (as libpq); with one it verifies the chain (as `verify-ca`).
//! `verify-ca` and `verify-full` need roots (`sslrootcert`, or the builder's `tls`): there is
//! no `~/.postgresql/root.crt` default. A Unix-socket host never uses TLS (as libpq). Without
//! the feature, `sslmode=prefer` is refused (it would silently mean plaintext) and anything
//! above names the feature to enable. A connection string without `sslmode` means `disable`
//! (libpq's default is `prefer`); a [`tokio_postgres::Config`] given to
//! [`config`](FailoverPoolBuilder::config) keeps its own default, `prefer`, with the feature;
//! without it, a `Config`'s `prefer` (its default, or set explicitly: the two cannot be told
//! apart) means plaintext, not a refusal, and `build` logs a warning saying so (an explicit
//! `SslMode::Disable` on the `Config` silences it).
//!
//! A refused certificate or a missing TLS is [`ErrorKind::Tls`]; a refused login (a wrong
//! password, `pg_hba.conf` admitting the login only over TLS or only with a client
//! certificate) is [`ErrorKind::Authentication`]: both permanent, naming the host, returned at
//! once (re-discovery stops waiting when every host refuses).
//!
//! Not supported: `sslmode=allow`, `sslnegotiation=direct` with TLS (passed to tokio-postgres
//! as is), `sslcrl`/`sslcrldir` (no revocation checks), `sslpassword` (encrypted keys),
//! `sslsni=0`, GSSAPI (`gssencmode`, `krbsrvname`), `sslcertmode`, `ssl_min_protocol_version`
//! (rustls speaks TLS 1.2 and 1.3), and channel binding for a server certificate signed with
//! SHA-512 or Ed25519.
//!
//! Every switch, re-discovery, eviction and role change is a `tracing` event (targets
//! `switchover::postgres` and `switchover::route`). Passwords never appear in `Debug` output,
//! errors or logs; hosts appear as `host:port`.
//!
//! # Limitations
//!
//! - TLS needs feature `tls`; see above for the libpq TLS options that are not supported.
//! - A credential provider's user and secret reach new connections only: open ones stay
//!   logged in with the secret they were made with.
//! - With two writable primaries the pool follows one, but the other still takes writes from
//!   anyone else: fence or stop it. Writes already sent to the losing one stay there.
//! - The runner's closures return `tokio_postgres::Error`; carry your own errors in `T`.
//! - A connection from [`get`](FailoverPool::get) ended by a failover fails with
//!   tokio-postgres' own "connection closed" error: the pool cannot tell a statement that was
//!   not sent from one in flight there (both may have executed, as the error says); the runner
//!   methods tell them apart. Statements on a live but slow server are bounded only by the
//!   server's `statement_timeout`.
//! - The pool keeps one extra connection per host for the heartbeat, probes and re-discovery.

mod acquire;
mod authority;
mod backend;
mod builder;
mod classify;
mod conn;
mod core;
mod discover;
mod error;
mod hosts;
mod kept;
mod login;
mod manager;
mod observe;
pub mod patroni;
mod pool;
mod read;
mod role;
mod runner;
mod settings;
mod ssl;
mod timeouts;
#[cfg(feature = "tls")]
mod tls;
mod tls_plan;
mod topology;

#[cfg(test)]
mod tests;

pub use builder::FailoverPoolBuilder;
pub use classify::is_failover_error;
pub use conn::PgConnection;
pub use error::{Error, ErrorKind};
pub use manager::ConnectionManager;
pub use pool::{BoxFuture, FailoverPool, HostStatus, PooledConnection};
pub use role::{ServerRole, TargetRole};
pub use ssl::SslMode;
pub use timeouts::Timeouts;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::{TlsConnector, TlsStream};
