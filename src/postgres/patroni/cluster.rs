//! Patroni's `GET /cluster` answer, read for the one thing the pool needs: which member holds
//! the leader key, where its Postgres listens, and on which timeline.
//!
//! Patroni names the leader from its DCS leader key (`role` `leader`, or `standby_leader` in a
//! standby cluster); `host`/`port` are the member's Postgres `connect_address`; `timeline` is
//! what the member last published (absent while its Postgres is stopping or starting).

use super::json::{self, Value};

/// The member that holds the leader key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Leader {
    /// Patroni's member name.
    pub(super) name: String,
    /// `host:port` of its Postgres, as Patroni publishes it.
    pub(super) addr: String,
    /// The timeline it last published, if any.
    pub(super) timeline: Option<u64>,
    /// Patroni's `state` of the member (`running`, `stopping`, `starting`, ...).
    pub(super) state: String,
    /// `host:port` of its REST API (from `api_url`), if given as `http://`.
    pub(super) api: Option<String>,
}

/// What one `/cluster` answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ClusterView {
    /// The leader, or `None` while no member holds the key (during a switchover or before a
    /// failover).
    pub(super) leader: Option<Leader>,
    /// How many members the answer lists.
    pub(super) members: usize,
}

/// Reads a `/cluster` body. A body that is not JSON, has no `members` array, a member without
/// a `name` or `role`, a leader without `host` and `port`, or two leaders, is an error that
/// says what is wrong.
pub(super) fn parse(body: &[u8]) -> Result<ClusterView, String> {
    let doc = json::parse(body).map_err(|e| format!("not JSON: {e}"))?;
    let members = doc
        .get("members")
        .ok_or("no \"members\"")?
        .as_array()
        .ok_or("\"members\" is not an array")?;
    let mut leader: Option<Leader> = None;
    for (i, m) in members.iter().enumerate() {
        let text = |key: &str| -> Result<&str, String> {
            m.get(key)
                .ok_or_else(|| format!("member {i} has no \"{key}\""))?
                .as_str()
                .ok_or_else(|| format!("member {i}'s \"{key}\" is not a string"))
        };
        let name = text("name")?;
        let role = text("role")?;
        if role != "leader" && role != "standby_leader" {
            continue;
        }
        if let Some(first) = &leader {
            return Err(format!("two leaders: {:?} and {name:?}", first.name));
        }
        let host = text("host")?;
        let port = m
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("leader {name:?} has no valid \"port\""))?;
        let timeline = match m.get("timeline") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                format!(
                    "leader {name:?}'s \"timeline\" is {}, not a count",
                    v.kind()
                )
            })?),
        };
        let state = m.get("state").and_then(Value::as_str).unwrap_or_default();
        let api = m
            .get("api_url")
            .and_then(Value::as_str)
            .and_then(|u| u.strip_prefix("http://"))
            .and_then(|u| u.split('/').next())
            .filter(|a| !a.is_empty())
            .map(str::to_owned);
        leader = Some(Leader {
            name: name.to_owned(),
            addr: join_host_port(host, port),
            timeline,
            state: state.to_owned(),
            api,
        });
    }
    Ok(ClusterView {
        leader,
        members: members.len(),
    })
}

/// `host:port`, with an IPv6 address in brackets (as the pool names its hosts).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// From a member's `GET /patroni` answer: whether its Postgres runs as the primary (`role`
/// `master`, `primary` or `standby_leader`), and the timeline it runs on (read from the
/// server, so it is the new one right after a promotion); `None` when the body does not say.
pub(super) fn promoted(body: &[u8]) -> Option<(bool, Option<u64>)> {
    let doc = json::parse(body).ok()?;
    let role = doc.get("role")?.as_str()?;
    let promoted = matches!(role, "master" | "primary" | "standby_leader");
    Some((promoted, doc.get("timeline").and_then(Value::as_u64)))
}
