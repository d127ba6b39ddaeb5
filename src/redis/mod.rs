//! A Redis read/write-splitting pool that follows the primary through failover.
//!
//! [`SplitPool`] sits in front of one primary and its replicas (not Redis Cluster): writes go
//! to the primary, reads to replicas, and when the primary dies or is demoted the pool finds the
//! new one and retries what is safe to retry. It implements [`redis::aio::ConnectionLike`], so
//! code written against redis-rs (`AsyncCommands`, `query_async`, pipelines, scripts) runs on it
//! unchanged — except connection-state commands sent alone or in a plain pipeline (`SELECT`,
//! `MULTI` / `EXEC` / `WATCH`; `WAIT` alone), which the shared pool refuses with an error
//! naming what to use instead (atomic pipelines, a pipeline with its `WAIT`,
//! [`SplitPool::dedicated`]); see [Limitations](#limitations). redis-rs's own
//! `ConnectionManager` reconnects only when its socket drops and stays glued to a demoted
//! primary. Nodes are reached over TCP, TLS or a Unix socket, with fixed credentials or a
//! credential provider (see [below](#tls-unix-sockets-and-credentials)).
//!
//! # Example
//!
//! ```no_run
//! use redis::AsyncCommands;
//! use switchover::redis::SplitPool;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = SplitPool::builder()
//!     .sentinels(["10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"])
//!     .master_name("mymaster")
//!     .build()
//!     .await?;
//!
//! let mut con = pool.clone();
//! let _: () = con.set("greeting", "hello").await?; // the primary
//! let v: Option<String> = con.get("greeting").await?; // a replica (may lag)
//!
//! // Writes that may be retried after a timeout; a session that reads its own writes.
//! let mut writer = pool.idempotent().read_your_writes(std::time::Duration::from_millis(500));
//! let _: () = writer.set("k", 1).await?;
//! let k: i64 = writer.get("k").await?; // the primary, within 500 ms of the write
//! # let _ = (v, k);
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! - **One attempt loop**: every command and pipeline runs through the core's runner
//!   ([`Router::call`](crate::route::Router::call)), which picks the node of each attempt,
//!   records its outcome and latency on the node's health endpoint, and retries per the
//!   [retry policy](SplitPoolBuilder::retry_policy). Writes go to the active node; reads (a
//!   command in [`READ_ONLY_COMMANDS`], or a pipeline of them only) to the node the read policy
//!   picks, and a retried read to a replica that has not failed in the call, else the primary.
//! - **Writes only on a confirmed primary**: a write whose primary is in doubt waits, within
//!   its attempt, for the core's [`Rediscovery`](crate::route::Rediscovery) to confirm one; if
//!   that is another node, the attempt fails as "not executed" and is retried there at once.
//! - **Discovery**: `ROLE` on every node in parallel (in Sentinel mode, after asking the
//!   sentinels: the primary is the node a majority of the *configured* sentinels names, or a
//!   newer `+switch-master`, or the replica the leader of a failover under way flags
//!   `promoted`, once it claims `master` itself; without a majority no primary is
//!   believed). It records each node's role and health, also in a run that finds no primary (a
//!   demoted node is neither primary nor read from), and drains replicas unfit for reads (link
//!   down, lagging, following another node: host names are resolved before addresses are
//!   compared). Nodes the sentinels no longer list, and that fail, are forgotten. It runs at once on a failover signal (`READONLY`, a failure of the primary,
//!   a sentinel's `+switch-master`), often while the primary is in doubt, and periodically as
//!   a backstop; concurrent doubts share one run. A node whose role changed loses its
//!   connections, and its dedicated connections go [stale](Error::is_stale).
//! - **DNS-named endpoints** (an ElastiCache primary or reader endpoint): a node given by
//!   host name is reached at the addresses the pool's [resolver](SplitPoolBuilder::resolver)
//!   gave last (tried in order), looked up again at every discovery run and every
//!   [`resolve_interval`](SplitPoolBuilder::resolve_interval) (5 s). When they change, new
//!   connections go to the new address; the next `ROLE` asks it on a new control connection,
//!   and once it answers, the connections to the old address are retired (the shared one
//!   replaced without failing a command, idle dedicated ones closed, handed-out ones
//!   [stale](Error::is_stale)); its answer is the node's role from then on. Every connection is
//!   also replaced at its [maximum age](SplitPoolBuilder::max_connection_age) (30 min, drawn up
//!   to 10 % less per connection), the backstop for a move no lookup shows. See
//!   [`crate::resolve`].
//! - **Retry safety**: a write refused with `READONLY` or a refused connection surely did not
//!   run, so it is retried even if not idempotent; a write that timed out or lost its
//!   connection after being sent, or a pipeline whose writes were refused after other commands
//!   in it that are not reads (`PUBLISH`, ...) ran, is retried only through an
//!   [`idempotent`](SplitPool::idempotent) handle. Blocking commands (`BLPOP`, `XREAD BLOCK`,
//!   `WAIT`, ...) run on a [dedicated connection](SplitPool::dedicated) with their block time
//!   added to the timeout.
//!
//! # TLS, Unix sockets and credentials
//!
//! - **TLS** (feature `tls`): [`SplitPoolBuilder::tls`] takes the crate's shared
//!   [`TlsOptions`](crate::tls::TlsOptions) (the Postgres pool takes the same): roots (a PEM
//!   bundle, the platform store, the webpki set), the verification level, a client certificate
//!   for mutual TLS, and a server-name override. `rediss://` addresses turn TLS on (with those
//!   options, else platform roots and full verification). Every connection the pool makes is
//!   TLS then: shared, `ROLE`, dedicated, pub/sub, and to the sentinels (unless they are given
//!   as `redis://`, or [`sentinel_tls`](SplitPoolBuilder::sentinel_tls) says otherwise). Nodes
//!   that Sentinel or `ROLE` report as `ip:port` are verified by IP address (the certificate
//!   needs an IP SAN), or against the server-name override (the connection still goes to the
//!   IP address). The pool opens the TCP and TLS streams itself (rustls, ring provider,
//!   configured once at build; no process-wide crypto provider is installed) and hands them to
//!   redis-rs, which logs in over them. Everything is read and checked at build, naming the
//!   field (`roots`, `client_cert`, `client_key`, `server_name`, `nodes` for a node that mixes
//!   TLS and plaintext or a `rediss://` address without the feature).
//! - **Not supported with TLS**: TLS over a Unix socket (refused), a different TLS setting
//!   per data node (all nodes are TLS or none), certificate revocation (CRL, OCSP), encrypted
//!   private keys, reloading certificates without a new pool (see [`crate::tls`]).
//! - **Unix sockets**: `unix:///path/to/redis.sock` nodes in a static topology (not
//!   sentinels); a replica set whose nodes report TCP addresses for each other works only if
//!   those are listed too.
//! - **Credentials**: fixed ([`password`](SplitPoolBuilder::password), `redis://user:pw@`), or
//!   a [`CredentialProvider`](crate::auth::CredentialProvider)
//!   ([`credentials`](SplitPoolBuilder::credentials),
//!   [`sentinel_credentials`](SplitPoolBuilder::sentinel_credentials): sentinels have their own)
//!   asked for every new connection within the connect timeout. A rejected login (`WRONGPASS`,
//!   `NOAUTH`, `-ERR invalid password`) is reported to the provider and retried once with its
//!   next answer, so a rotation costs no failed command; open connections keep the login they
//!   made.
//! - **Errors name the cause**: a login every node (or sentinel) rejects is an
//!   [`ErrorKind::Auth`] error naming the server, a failed handshake an [`ErrorKind::Tls`] one
//!   (also a plaintext client on a TLS-only port, and TLS against a plaintext port: a silent
//!   node that never answered is asked once in the other protocol), both permanent, so
//!   [`build`](SplitPoolBuilder::build) returns at once instead of "no primary confirmed".
//!
//! Decisions are `tracing` events: the core's (in doubt, switched) with target
//! `switchover::route`, the pool's (node role or fitness changed, `+switch-master`) with target
//! `switchover::redis`.
//!
//! # Limitations
//!
//! - `SELECT` through the pool is refused (it would change one shared connection only); set
//!   the database with [`db`](SplitPoolBuilder::db).
//! - `MULTI` / `EXEC` / `DISCARD` / `WATCH` / `UNWATCH`, sent alone or as commands of a
//!   pipeline, are refused on the shared pool (they would catch other callers' commands); use
//!   an atomic [`Pipeline`](redis::Pipeline) or a [dedicated connection](SplitPool::dedicated).
//!   `WAIT` / `WAITAOF` alone are refused too (send them in the pipeline of the writes they
//!   count).
//! - Where code written for a plain redis-rs connection sees the pool differ on purpose: a
//!   `READONLY` reply inside an `EXEC` (the primary was demoted) is waited out as a failover
//!   and the transaction retried on the new primary, instead of being returned; and a client
//!   connection killed on the server (`CLIENT KILL`) is replaced by the pool: later commands
//!   go over a new connection instead of failing with an I/O error.
//! - Pub/sub connections ([`SplitPool::pubsub`]) do not follow failovers by themselves, nor a
//!   moved host name, nor the maximum age.
//! - In static mode only the listed nodes are used; replicas the primary reports but that are
//!   not listed are ignored.
//! - With a credential provider, a connection opened before a rotation keeps its login (Redis
//!   does not log connections out); only new connections use the new secret.

mod attempt;
mod backend;
mod builder;
mod classify;
mod command;
mod config;
mod connect;
mod cut_io;
mod dedicated;
mod discover;
mod error;
mod heartbeat;
mod login;
mod node;
mod observe;
mod pool;
mod reply;
mod resolve;
mod sentinel;
mod session;
mod spares;
mod table;
mod topology;

#[cfg(test)]
mod tests;

pub use builder::{SplitPoolBuilder, default_retry_policy};
pub use classify::is_readonly;
pub use command::{READ_ONLY_COMMANDS, is_read_only};
pub use config::{NodeAddr, ReadFrom, Timeouts};
pub use dedicated::DedicatedConnection;
pub use error::{Error, ErrorKind};
pub use node::NodeId;
pub use pool::{PoolStatus, SplitPool, Target};
