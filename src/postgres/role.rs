use std::fmt;

/// Which kind of server a connection must reach.
///
/// | target | acceptable servers, best first |
/// |---|---|
/// | [`Primary`](Self::Primary) | the writable primary only |
/// | [`PreferPrimary`](Self::PreferPrimary) | the primary, else a standby or a read-only primary |
/// | [`Standby`](Self::Standby) | a hot standby only |
/// | [`PreferStandby`](Self::PreferStandby) | a standby, else the primary or a read-only primary |
/// | [`Any`](Self::Any) | whichever answers, the primary first |
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TargetRole {
    /// A writable primary (libpq's `read-write`). The default for
    /// [`FailoverPool::get`](super::FailoverPool::get).
    #[default]
    Primary,
    /// A hot standby when one is up, else the primary. The default for
    /// [`FailoverPool::get_read`](super::FailoverPool::get_read).
    PreferStandby,
    /// A hot standby only (libpq's `standby`).
    Standby,
    /// Any server that accepts the connection.
    Any,
    /// The primary when it is up, else a standby.
    PreferPrimary,
}

impl TargetRole {
    /// `true` when a server in `role` may serve this target at all.
    pub const fn accepts(self, role: ServerRole) -> bool {
        match self {
            TargetRole::Primary => matches!(role, ServerRole::Primary),
            TargetRole::Standby => matches!(role, ServerRole::Standby),
            TargetRole::PreferStandby | TargetRole::PreferPrimary | TargetRole::Any => true,
        }
    }

    /// `true` when `role` is this target's first choice (for `Any`, every role is).
    pub const fn prefers(self, role: ServerRole) -> bool {
        match self {
            TargetRole::Primary | TargetRole::PreferPrimary => matches!(role, ServerRole::Primary),
            TargetRole::Standby | TargetRole::PreferStandby => matches!(role, ServerRole::Standby),
            TargetRole::Any => true,
        }
    }
}

impl fmt::Display for TargetRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetRole::Primary => "primary",
            TargetRole::PreferStandby => "prefer-standby",
            TargetRole::Standby => "standby",
            TargetRole::Any => "any",
            TargetRole::PreferPrimary => "prefer-primary",
        })
    }
}

/// What a server said it is when it was last heard from.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerRole {
    /// Not in recovery and writable.
    Primary,
    /// A hot standby (in recovery): reads only.
    Standby,
    /// Not in recovery but `default_transaction_read_only` is on: a fenced or demoted primary.
    /// Reads only.
    ReadOnly,
}

impl ServerRole {
    /// The role a server reports through its `in_hot_standby` and
    /// `default_transaction_read_only` settings (`"on"`/`"off"`).
    pub(crate) fn from_settings(in_hot_standby: bool, read_only: bool) -> Self {
        if in_hot_standby {
            ServerRole::Standby
        } else if read_only {
            ServerRole::ReadOnly
        } else {
            ServerRole::Primary
        }
    }

    pub(crate) const fn to_u8(self) -> u8 {
        match self {
            ServerRole::Primary => 1,
            ServerRole::Standby => 2,
            ServerRole::ReadOnly => 3,
        }
    }

    pub(crate) const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(ServerRole::Primary),
            2 => Some(ServerRole::Standby),
            3 => Some(ServerRole::ReadOnly),
            _ => None,
        }
    }
}

impl fmt::Display for ServerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerRole::Primary => "primary",
            ServerRole::Standby => "standby",
            ServerRole::ReadOnly => "read-only primary",
        })
    }
}

/// Parses a Postgres boolean setting as reported in a `ParameterStatus` message or by
/// `current_setting`.
pub(crate) fn setting_is_on(value: &str) -> bool {
    matches!(value, "on" | "true" | "yes" | "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_accept_and_prefer_the_documented_roles() {
        use ServerRole::*;
        assert!(TargetRole::Primary.accepts(Primary));
        assert!(!TargetRole::Primary.accepts(ReadOnly));
        assert!(!TargetRole::Primary.accepts(Standby));
        assert!(TargetRole::Standby.accepts(Standby));
        assert!(!TargetRole::Standby.accepts(Primary));
        assert!(TargetRole::PreferStandby.accepts(Primary));
        assert!(TargetRole::PreferStandby.prefers(Standby));
        assert!(!TargetRole::PreferStandby.prefers(Primary));
        assert!(TargetRole::PreferPrimary.prefers(Primary));
        assert!(TargetRole::Any.accepts(ReadOnly));
    }

    #[test]
    fn settings_map_to_roles() {
        assert_eq!(ServerRole::from_settings(true, true), ServerRole::Standby);
        assert_eq!(ServerRole::from_settings(false, true), ServerRole::ReadOnly);
        assert_eq!(ServerRole::from_settings(false, false), ServerRole::Primary);
        for r in [
            ServerRole::Primary,
            ServerRole::Standby,
            ServerRole::ReadOnly,
        ] {
            assert_eq!(ServerRole::from_u8(r.to_u8()), Some(r));
        }
        assert_eq!(ServerRole::from_u8(0), None);
        assert!(setting_is_on("on"));
        assert!(!setting_is_on("off"));
    }
}
