//! A reconnecting Postgres pool that always hands out a connection of the right role.
//!
//! The failure it exists for: after a failover, ordinary pools keep their connections to a node
//! that is now a standby or a fenced, read-only primary; `SELECT 1` health checks pass and
//! every write fails with SQLSTATE `25006` until the process restarts. [`FailoverPool`] keeps
//! track of which host is the primary, and never hands out a connection whose role does not
//! match what was asked for.
//!
//! - **Several hosts, a target role.** Hosts come from a multi-host connection string
//!   (`host=a,b port=5432,5433`) or a list. [`get`](FailoverPool::get) hands out the pool's
//!   [`TargetRole`] (default: the writable primary); [`get_read`](FailoverPool::get_read) a
//!   read role (default: prefer a hot standby). Both return deadpool's `Object`, which derefs
//!   to [`PgConnection`] and then to [`tokio_postgres::Client`]: query code is unchanged.
//! - **Role detection without a round trip.** PostgreSQL 14 and later report `in_hot_standby`
//!   and `default_transaction_read_only` at login and whenever they change; the pool reads them
//!   from the login reply and from every later report (a promotion, a read-only fence after a
//!   configuration reload). Older servers are asked with one query,
//!   `SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')`, at connect
//!   time and at each recycle.
//! - **Failover.** An error that means "this node is no longer what we thought" (`25006`,
//!   `57P01`/`57P02`/`57P03`, class `08`, a closed or timed-out connection, a refused connect;
//!   see [`is_failover_error`]) is recorded against the host in the [health
//!   tracker](crate::health); the pool then probes **every host in parallel** for its role,
//!   switches the [router](crate::route) to the primary it finds (the generation grows by one),
//!   and evicts every idle connection of the old generation at once. Checked-out connections of
//!   the old generation are discarded when they come back: the recycle check compares
//!   generation, host health and the role the server last reported.
//! - **A deadline on every phase** ([`Timeouts`]): TCP connect 2 s, connect + login 3 s,
//!   acquire 5 s, recycle check 1 s, role probe 2 s, runner steps 10 s; TCP keepalive (5 s idle,
//!   1 s interval, 3 probes) and `TCP_USER_TIMEOUT` 5 s, so a dead peer is noticed in seconds.
//!   [`get`](FailoverPool::get) never waits past the acquire timeout, even when every host is
//!   down.
//! - **No connection storms.** At most 4 connects in flight (configurable); reconnects inside
//!   one `get` wait with the executor's [exponential backoff](crate::retry::ExponentialBackoff)
//!   and full jitter; re-discoveries never overlap and one that started after your error
//!   answers for it.
//! - **A runner for closures.** [`transaction`](FailoverPool::transaction) runs
//!   `BEGIN`/your closure/`COMMIT` on the primary and retries after a failover once the new
//!   primary is found — when the operation is declared idempotent, or when the error proves
//!   nothing ran (anything before `COMMIT` was sent). A connection lost after `COMMIT` was
//!   sent is reported as [`Error::OutcomeUnknown`], never as a success or a plain failure.
//!   [`run`](FailoverPool::run) does the same for autocommit statements.
//!
//! # Error classification
//!
//! [`Classify`](crate::Classify) is implemented for [`tokio_postgres::Error`]:
//!
//! | error | class | executed | failover signal |
//! |---|---|---|---|
//! | `25006` read-only transaction | transient | no | yes |
//! | `57P01` admin shutdown, `57P02` crash shutdown | transient | maybe | yes |
//! | `57P03` cannot connect now | transient | no | yes |
//! | class `08` connection exception (`08001`/`08004`: not executed) | transient | maybe | yes |
//! | connection closed or lost, I/O error, client timeout | transient | maybe | yes |
//! | connect refused or unreachable | transient | no | yes |
//! | `40001` serialization failure, `40P01` deadlock | transient | no | no |
//! | `53300` too many connections | throttled | no | no |
//! | other SQL errors, authentication, conversions | permanent | — | no |
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
//! // A transaction that survives a failover.
//! pool.transaction(false, |tx| Box::pin(async move {
//!     tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = $1", &[&1_i64]).await?;
//!     tx.execute("UPDATE accounts SET balance = balance + 10 WHERE id = $1", &[&2_i64]).await?;
//!     Ok(())
//! }))
//! .await?;
//! # Ok(()) }
//! ```
//!
//! Every switch, re-discovery, eviction and role change is a `tracing` event with target
//! `switchover::postgres`. Passwords never appear in `Debug` output, errors or logs; hosts
//! appear as `host:port`.
//!
//! # Limitations
//!
//! - Connections are made without TLS (`sslmode=require` is refused at build).
//! - Only TCP hosts (no Unix sockets).
//! - The runner's closures return `tokio_postgres::Error`; carry your own errors in `T`.
//! - A checked-out connection is not interrupted by a failover; the caller sees the error of its
//!   own statement (give it to [`FailoverPool::report`] to start the re-discovery at once).

mod classify;
mod config;
mod conn;
mod core;
mod error;
mod manager;
mod pool;
mod role;

pub use classify::is_failover_error;
pub use config::{FailoverPoolBuilder, Timeouts};
pub use conn::PgConnection;
pub use error::Error;
pub use manager::ConnectionManager;
pub use pool::{BoxFuture, FailoverPool, HostStatus, PooledConnection};
pub use role::{ServerRole, TargetRole};
