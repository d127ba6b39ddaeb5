//! Which host a connection of a [`TargetRole`] other than `Primary` goes to: a
//! [`ReadPolicy`] for the runner's [`Target::Read`](crate::route::Target::Read).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::role::TargetRole;
use super::topology::HostRoles;
use crate::health::Endpoint;
use crate::route::{ReadCandidates, ReadPolicy};

/// The [`TargetRole`] preference as a read policy: among the available hosts, one of a role
/// the target prefers, else one it accepts, else one whose role is not known yet (connecting
/// tells); `None` when no available host may serve the target. Equals are taken in turn, so
/// connections spread over the standbys; for [`TargetRole::PreferPrimary`] and
/// [`TargetRole::Any`] the available primary comes first.
pub(crate) struct RolePolicy {
    target: TargetRole,
    roles: Arc<HostRoles>,
    cursor: AtomicUsize,
}

impl fmt::Debug for RolePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RolePolicy")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl RolePolicy {
    pub(crate) fn new(target: TargetRole, roles: Arc<HostRoles>) -> Self {
        RolePolicy {
            target,
            roles,
            cursor: AtomicUsize::new(0),
        }
    }

    /// How well `endpoint` serves the target: 0 preferred, 1 acceptable, 2 role unknown;
    /// `None` when it may not serve it at all (or is not one of the pool's hosts).
    pub(crate) fn rank(&self, endpoint: &Endpoint<Arc<str>>) -> Option<u8> {
        let i = self.roles.index_of(endpoint.id())?;
        match self.roles.server_role(i, endpoint) {
            Some(r) if self.target.prefers(r) => Some(0),
            Some(r) if self.target.accepts(r) => Some(1),
            Some(_) => None,
            None => Some(2),
        }
    }

    /// `true` when a connection for the target may be opened on `endpoint` now.
    pub(crate) fn admits(&self, endpoint: &Endpoint<Arc<str>>) -> bool {
        endpoint.is_available() && self.rank(endpoint).is_some()
    }
}

impl ReadPolicy<Arc<str>> for RolePolicy {
    fn choose<'r>(&self, c: &ReadCandidates<'r, Arc<str>>) -> Option<&'r Endpoint<Arc<str>>> {
        if matches!(self.target, TargetRole::PreferPrimary | TargetRole::Any)
            && let Some(p) = c.primary()
            && self.rank(p) == Some(0)
        {
            return Some(p);
        }
        let n = c.all().count();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(u8, &'r Endpoint<Arc<str>>)> = None;
        for ep in c.all().skip(start).chain(c.all().take(start)) {
            let Some(rank) = self.rank(ep) else { continue };
            if best.is_none_or(|(b, _)| rank < b) {
                best = Some((rank, ep));
                if rank == 0 {
                    break;
                }
            }
        }
        best.map(|(_, ep)| ep)
    }
}
