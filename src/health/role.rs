use std::fmt;

/// The replication role of an endpoint, as last reported by a [`Probe`](super::Probe) or set by
/// an adapter with [`Endpoint::set_role`](super::Endpoint::set_role).
///
/// The router never picks a known [`Replica`](Role::Replica) as the primary; endpoints whose
/// role is [`Unknown`](Role::Unknown) (the default, and the normal case for DynamoDB regions)
/// are primary candidates by priority.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// Not known (never probed, or the backend has no roles).
    #[default]
    Unknown,
    /// Accepts writes.
    Primary,
    /// Read-only copy of a primary.
    Replica,
}

impl Role {
    pub(crate) const fn to_u8(self) -> u8 {
        match self {
            Role::Unknown => 0,
            Role::Primary => 1,
            Role::Replica => 2,
        }
    }

    pub(crate) const fn from_u8(v: u8) -> Self {
        match v {
            1 => Role::Primary,
            2 => Role::Replica,
            _ => Role::Unknown,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Unknown => "unknown",
            Role::Primary => "primary",
            Role::Replica => "replica",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        for r in [Role::Unknown, Role::Primary, Role::Replica] {
            assert_eq!(Role::from_u8(r.to_u8()), r);
        }
    }
}
