//! The seam between the failover logic and tokio-postgres: how the pool reaches a host.
//!
//! Discovery and the health tracker's probe only need "connect to host `i` and read its
//! role", the [`Backend`] trait, implemented by [`PgBackend`] and, in the unit tests, by a
//! scripted fake (deadpool's `Manager` trait and its unreliable-manager tests are the model).
//! Pooled connections are made by [`PgBackend::connect`] directly: the fake cannot produce a
//! `tokio_postgres::Client`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::conn::{PgConnection, connect};
use super::error::Error;
use super::hosts::HostConfig;
use super::login::Login;
use super::role::ServerRole;
use crate::error::{Classify, ErrorClass};

/// How discovery and probes reach the hosts, by index.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Connects to host `host`, reads its role and disconnects. The caller bounds the time.
    fn probe(&self, host: usize) -> impl Future<Output = Result<ServerRole, ProbeError>> + Send;
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

/// The real backend: the host configurations, the credential provider if there is one, and
/// the login deadline of a probe.
#[derive(Debug)]
pub(crate) struct PgBackend {
    hosts: Vec<HostConfig>,
    login: Option<Login>,
    probe_timeout: Duration,
}

impl PgBackend {
    pub(crate) fn new(
        hosts: Vec<HostConfig>,
        login: Option<Login>,
        probe_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(PgBackend {
            hosts,
            login,
            probe_timeout,
        })
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
        match &self.login {
            Some(l) => l.connect(host, &self.hosts[host], generation, login).await,
            None => connect(host, &self.hosts[host], generation, login).await,
        }
    }
}

impl Backend for PgBackend {
    async fn probe(&self, host: usize) -> Result<ServerRole, ProbeError> {
        let conn = self
            .connect(host, 0, self.probe_timeout)
            .await
            .map_err(|e| ProbeError::from(&e))?;
        // `connect` learns the role (from the login reply, or with one query on servers that
        // do not report it) before it returns.
        Ok(conn.role().unwrap_or(ServerRole::ReadOnly))
    }
}
