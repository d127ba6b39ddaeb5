//! The seam between the failover logic and tokio-postgres: how the pool reaches a host.
//!
//! Discovery and the health tracker's probe only need "connect to host `i` and read its
//! role" (and, for a writable primary, its cluster and timeline), the [`Backend`] trait,
//! implemented by [`PgBackend`] and, in the unit tests, by a scripted fake (deadpool's
//! `Manager` trait and its unreliable-manager tests are the model). Pooled connections are made by [`PgBackend::connect`] directly: the fake cannot produce a
//! `tokio_postgres::Client`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::conn::{PgConnection, connect, query_role};
use super::discover::primaries::Lineage;
use super::error::Error;
use super::hosts::HostConfig;
use super::kept::Kept;
use super::login::Login;
use super::role::ServerRole;
use crate::error::{Classify, ErrorClass};
use crate::resolve::{AgeLimit, Names};

/// How discovery and probes reach the hosts, by index.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Connects to host `host`, reads its role and disconnects. The caller bounds the time.
    fn probe(&self, host: usize) -> impl Future<Output = Result<ServerRole, ProbeError>> + Send;

    /// `true` when host `host` has an open connection to ask on, so that an answer needs no
    /// login: a re-discovery run stops waiting for such a host past its silence bound. By
    /// default every host (a scripted backend answers without logging in).
    fn is_connected(&self, _host: usize) -> bool {
        true
    }

    /// A discovery run started: the hosts' names are looked up again in the background (by
    /// default there are none).
    fn kick_names(&self) {}

    /// As [`probe`](Self::probe), and for a writable primary also its cluster and timeline,
    /// which rank several writable primaries. By default the role only: a backend that cannot
    /// tell leaves writable hosts unranked but for the current primary and the host order.
    fn inspect(&self, host: usize) -> impl Future<Output = Result<HostReport, ProbeError>> + Send {
        let probe = self.probe(host);
        async move {
            probe.await.map(|role| HostReport {
                role,
                lineage: None,
            })
        }
    }
}

/// What a probe learned of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostReport {
    pub(crate) role: ServerRole,
    /// For a writable primary, when known.
    pub(crate) lineage: Option<Lineage>,
}

/// The cluster and the live timeline of a primary, in one round trip. The timeline is that of
/// the current WAL position (the first 8 hex digits of its WAL file name): a promoted standby
/// writes its new timeline there at once, while `pg_control_checkpoint()` keeps the old one
/// until its end-of-recovery checkpoint completes. Fails during recovery (`pg_current_wal_lsn`
/// is refused there); both functions are executable by any role.
const LINEAGE_QUERY: &str = "SELECT pg_walfile_name(pg_current_wal_lsn()), \
     system_identifier FROM pg_control_system()";

/// Parses the answer to [`LINEAGE_QUERY`].
pub(crate) fn parse_lineage(walfile: &str, system: i64) -> Option<Lineage> {
    let timeline = u32::from_str_radix(walfile.get(..8)?, 16).ok()?;
    Some(Lineage {
        system: system as u64,
        timeline,
    })
}

/// Why a probe got no role: a description for logs and [`NoPrimary`](crate::route::NoPrimary)
/// (never a password), and whether it will not fix itself (a rejected login).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProbeError {
    pub(crate) detail: String,
    pub(crate) permanent: bool,
}

impl ProbeError {
    pub(crate) fn transient(detail: impl Into<String>) -> Self {
        ProbeError {
            detail: detail.into(),
            permanent: false,
        }
    }
}

impl From<&Error> for ProbeError {
    fn from(e: &Error) -> Self {
        // This layer's message and the client's cause, e.g. "could not connect to h: db
        // error: FATAL: password authentication failed for user ...".
        let mut detail = e.to_string();
        let mut cur = std::error::Error::source(e);
        while let Some(s) = cur {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            cur = s.source();
        }
        ProbeError {
            detail,
            // Nothing a re-discovery can fix: a rejected login, a refused certificate, or a
            // credential provider that failed or did not answer (callers then stop waiting
            // for a run and see the error of their own attempt).
            permanent: e.classify().class() == ErrorClass::Permanent
                || e.kind() == super::error::ErrorKind::Authentication,
        }
    }
}

/// The real backend: the host configurations, the credential provider if there is one, the
/// login deadline of a probe, and the connection kept per host for probes and discovery.
#[derive(Debug)]
pub(crate) struct PgBackend {
    hosts: Vec<HostConfig>,
    login: Option<Login>,
    probe_timeout: Duration,
    kept: Kept,
    /// The host names among the hosts, looked up again periodically and at each run.
    pub(crate) names: Arc<Names>,
    ages: Arc<AgeLimit>,
}

impl PgBackend {
    pub(crate) fn new(
        hosts: Vec<HostConfig>,
        login: Option<Login>,
        probe_timeout: Duration,
        ages: Arc<AgeLimit>,
    ) -> Arc<Self> {
        let names = Names::new();
        for dns in hosts.iter().filter_map(|h| h.dns.as_ref()) {
            names.add(dns);
        }
        Arc::new(PgBackend {
            kept: Kept::new(hosts.len()),
            hosts,
            login,
            probe_timeout,
            names,
            ages,
        })
    }

    /// `true` for a connection to host `host` made in address epoch `epoch` once the host's
    /// name was confirmed elsewhere (see [`Name::confirm`](crate::resolve::Name::confirm)).
    pub(crate) fn name_moved(&self, host: usize, epoch: u64) -> bool {
        self.hosts[host]
            .dns
            .as_ref()
            .is_some_and(|d| d.is_stale(epoch))
    }

    /// Resolves once connections to host `host` of address epoch `epoch` are retired (never
    /// for a host without a name).
    pub(crate) fn retired(
        &self,
        host: usize,
        epoch: u64,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.hosts[host].dns.as_ref().map(|d| d.retired(epoch))
    }

    /// `true` once the pool was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.kept.is_closed()
    }

    /// Drops the connections kept for probes (the pool was closed).
    pub(crate) fn close(&self) {
        self.kept.close();
    }

    /// Host `host`'s kept connection, made within the probe timeout when there is none open.
    async fn kept(&self, host: usize) -> Result<Arc<PgConnection>, ProbeError> {
        let get = || {
            self.kept
                .get(host, || self.connect(host, 0, self.probe_timeout))
        };
        let conn = get().await.map_err(|e| ProbeError::from(&e))?;
        // One to an address the host's name moved off, or past its age: replaced.
        let moved = self.hosts[host]
            .dns
            .as_ref()
            .is_some_and(|d| d.epoch() != conn.addr_epoch());
        if !moved && !conn.is_expired() {
            return Ok(conn);
        }
        self.kept.discard(host, &conn);
        drop(conn);
        get().await.map_err(|e| ProbeError::from(&e))
    }

    /// The role of host `host`, asked with one query on its kept connection (which is
    /// forgotten when the query fails, so the next probe connects again).
    async fn ask_role(&self, host: usize) -> Result<(Arc<PgConnection>, ServerRole), ProbeError> {
        let conn = self.kept(host).await?;
        match query_role(conn.client()).await {
            Ok(role) => {
                // The role check answered from the addresses this connection went to: the
                // connections to any address the host's name moved off are retired.
                if let Some(dns) = &self.hosts[host].dns {
                    dns.confirm(conn.addr_epoch());
                }
                Ok((conn, role))
            }
            Err(e) => {
                self.kept.discard(host, &conn);
                let e = Error::postgres(self.hosts[host].name.clone(), e);
                Err(ProbeError::from(&e))
            }
        }
    }

    pub(crate) fn names(&self) -> Vec<Arc<str>> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// Opens a pooled connection to host `host`, tagged with `generation`, within `login`.
    pub(crate) async fn connect(
        &self,
        host: usize,
        generation: u64,
        login: Duration,
    ) -> Result<PgConnection, Error> {
        let mut conn = match &self.login {
            Some(l) => l.connect(host, &self.hosts[host], generation, login).await,
            None => connect(host, &self.hosts[host], generation, login).await,
        }?;
        conn.set_expiry(self.ages.deadline());
        Ok(conn)
    }
}

/// Probes and discovery ask on the host's kept connection (a heartbeat costs one round trip
/// of `SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')`, no
/// login); a connection that broke or failed a query is replaced at the next ask.
impl Backend for PgBackend {
    fn is_connected(&self, host: usize) -> bool {
        self.kept.is_open(host)
    }

    fn kick_names(&self) {
        self.names.kick();
    }

    async fn probe(&self, host: usize) -> Result<ServerRole, ProbeError> {
        self.ask_role(host).await.map(|(_, role)| role)
    }

    async fn inspect(&self, host: usize) -> Result<HostReport, ProbeError> {
        let (conn, role) = self.ask_role(host).await?;
        if role != ServerRole::Primary {
            return Ok(HostReport {
                role,
                lineage: None,
            });
        }
        // The caller bounds the time; a failure leaves the primary unranked, not unreachable.
        let lineage = match conn.query_one(LINEAGE_QUERY, &[]).await {
            Ok(row) => match (row.try_get::<_, String>(0), row.try_get::<_, i64>(1)) {
                (Ok(walfile), Ok(system)) => parse_lineage(&walfile, system),
                _ => None,
            },
            Err(e) => {
                tracing::debug!(
                    target: "switchover::postgres",
                    host = %self.hosts[host].name,
                    error = %e,
                    "could not read the timeline of a primary"
                );
                None
            }
        };
        Ok(HostReport { role, lineage })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_is_the_first_eight_hex_digits_of_the_wal_file_name() {
        assert_eq!(
            parse_lineage("0000000A0000000000000003", -5),
            Some(Lineage {
                system: (-5_i64) as u64,
                timeline: 10
            })
        );
        assert_eq!(parse_lineage("zz", 1), None);
    }
}
