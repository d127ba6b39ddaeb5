//! Parsers of the replies discovery reads: `ROLE`, `SENTINEL GET-MASTER-ADDR-BY-NAME`,
//! `SENTINEL REPLICAS` and the `+switch-master` message.

use std::time::Duration;

use redis::Value;

use super::config::NodeAddr;

/// What one node said about itself in reply to `ROLE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RoleReply {
    /// `master`, with its replication offset and the replicas it sees.
    Primary {
        offset: i64,
        replicas: Vec<(NodeAddr, i64)>,
    },
    /// `slave`: whom it follows, whether the link is up (`connected`), its offset.
    Replica {
        master: Option<NodeAddr>,
        link_up: bool,
        offset: i64,
    },
    /// A sentinel (a misconfigured node list).
    Sentinel,
}

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.trim().parse().ok(),
    }
}

fn items(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

fn addr(host: Option<String>, port: Option<i64>) -> Option<NodeAddr> {
    let port = u16::try_from(port?).ok()?;
    NodeAddr::new(host?, port).ok()
}

/// Parses a `ROLE` reply. `None` for anything malformed.
pub(crate) fn parse_role(v: &Value) -> Option<RoleReply> {
    let a = items(v)?;
    match text(a.first()?)?.as_str() {
        "master" => {
            let offset = a.get(1).and_then(int).unwrap_or(0);
            let replicas = a
                .get(2)
                .and_then(items)
                .unwrap_or(&[])
                .iter()
                .filter_map(|r| {
                    let r = items(r)?;
                    let at = addr(r.first().and_then(text), r.get(1).and_then(int))?;
                    Some((at, r.get(2).and_then(int).unwrap_or(0)))
                })
                .collect();
            Some(RoleReply::Primary { offset, replicas })
        }
        "slave" | "replica" => Some(RoleReply::Replica {
            master: addr(a.get(1).and_then(text), a.get(2).and_then(int)),
            link_up: a.get(3).and_then(text).as_deref() == Some("connected"),
            offset: a.get(4).and_then(int).unwrap_or(-1),
        }),
        "sentinel" => Some(RoleReply::Sentinel),
        _ => None,
    }
}

/// Parses `SENTINEL GET-MASTER-ADDR-BY-NAME`: `[ip, port]`, or nil for an unknown name.
pub(crate) fn parse_master_addr(v: &Value) -> Option<Option<NodeAddr>> {
    match v {
        Value::Nil => Some(None),
        other => {
            let a = items(other)?;
            Some(Some(addr(
                a.first().and_then(text),
                a.get(1).and_then(int),
            )?))
        }
    }
}

/// One replica as a sentinel sees it (`SENTINEL REPLICAS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SentinelReplica {
    pub(crate) addr: NodeAddr,
    /// Not flagged `s_down`, `o_down` or `disconnected`.
    pub(crate) healthy: bool,
    /// `master-link-status` is `ok`.
    pub(crate) link_up: bool,
    /// Flagged `promoted`: the sentinel leading a failover chose it as the new primary.
    pub(crate) promoted: bool,
}

fn fields(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| {
                Some((text(k)?, text(v).or_else(|| int(v).map(|i| i.to_string()))?))
            })
            .collect(),
        other => items(other)
            .unwrap_or(&[])
            .chunks(2)
            .filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?)))
            .collect(),
    }
}

/// Parses `SENTINEL REPLICAS` (RESP2 flat key/value arrays or RESP3 maps).
pub(crate) fn parse_sentinel_replicas(v: &Value) -> Option<Vec<SentinelReplica>> {
    let list = items(v)?;
    Some(
        list.iter()
            .filter_map(|entry| {
                let f = fields(entry);
                let get = |k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
                let at = addr(get("ip"), get("port").and_then(|p| p.parse().ok()))?;
                let flags = get("flags").unwrap_or_default();
                let healthy = !flags
                    .split(',')
                    .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
                let link_up = get("master-link-status").is_none_or(|s| s == "ok");
                let promoted = flags.split(',').any(|f| f == "promoted");
                Some(SentinelReplica {
                    addr: at,
                    healthy,
                    link_up,
                    promoted,
                })
            })
            .collect(),
    )
}

/// The timings a sentinel monitors a master with (`SENTINEL MASTER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SentinelTimings {
    /// `down-after-milliseconds`: silence before the master is subjectively down.
    pub(crate) down_after: Duration,
    /// `failover-timeout`: the bound of one failover attempt.
    pub(crate) failover_timeout: Duration,
}

/// Parses `SENTINEL MASTER` (RESP2 flat key/value array or RESP3 map) for its timings.
pub(crate) fn parse_sentinel_timings(v: &Value) -> Option<SentinelTimings> {
    let f = fields(v);
    let ms = |k: &str| {
        let v = f.iter().find(|(key, _)| key == k)?;
        v.1.trim().parse::<u64>().ok().map(Duration::from_millis)
    };
    Some(SentinelTimings {
        down_after: ms("down-after-milliseconds")?,
        failover_timeout: ms("failover-timeout")?,
    })
}

/// Parses a `+switch-master` message: `<name> <old ip> <old port> <new ip> <new port>`.
pub(crate) fn parse_switch_master(payload: &str, master: &str) -> Option<NodeAddr> {
    let parts: Vec<&str> = payload.split_whitespace().collect();
    match parts.as_slice() {
        [name, _, _, ip, port] if *name == master => NodeAddr::new(*ip, port.parse().ok()?).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_role_replies() {
        let primary = Value::Array(vec![
            bulk("master"),
            Value::Int(3129659),
            Value::Array(vec![
                Value::Array(vec![bulk("127.0.0.1"), bulk("9001"), bulk("3129242")]),
                Value::Array(vec![bulk("127.0.0.1"), bulk("9002"), bulk("3129543")]),
            ]),
        ]);
        let RoleReply::Primary { offset, replicas } = parse_role(&primary).unwrap() else {
            panic!("not a primary");
        };
        assert_eq!(offset, 3129659);
        assert_eq!(replicas.len(), 2);
        assert_eq!(replicas[1].0.to_string(), "127.0.0.1:9002");

        let replica = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            Value::Int(9000),
            bulk("connected"),
            Value::Int(3167038),
        ]);
        assert_eq!(
            parse_role(&replica),
            Some(RoleReply::Replica {
                master: Some(NodeAddr::new("127.0.0.1", 9000).unwrap()),
                link_up: true,
                offset: 3167038
            })
        );
        let linkless = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            Value::Int(9000),
            bulk("connect"),
            Value::Int(-1),
        ]);
        assert!(matches!(
            parse_role(&linkless),
            Some(RoleReply::Replica { link_up: false, .. })
        ));
        // Garbage is rejected, never a panic.
        for bad in [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![]),
            Value::Array(vec![bulk("x")]),
        ] {
            assert_eq!(parse_role(&bad), None);
        }
    }

    #[test]
    fn parses_sentinel_replies() {
        let v = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("127.0.0.1:7001"),
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("port"),
            bulk("7001"),
            bulk("flags"),
            bulk("slave,s_down"),
            bulk("master-link-status"),
            bulk("err"),
        ])]);
        let r = parse_sentinel_replicas(&v).unwrap();
        assert_eq!(r.len(), 1);
        assert!(!r[0].healthy);
        assert!(!r[0].link_up);
        assert!(!r[0].promoted);
        // The replica the leader of a failover chose, as it lists it meanwhile.
        let v = Value::Array(vec![Value::Array(vec![
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("port"),
            bulk("7002"),
            bulk("flags"),
            bulk("slave,promoted"),
        ])]);
        let r = parse_sentinel_replicas(&v).unwrap();
        assert!(r[0].promoted && r[0].healthy, "{:?}", r[0].addr);
        assert_eq!(
            parse_master_addr(&Value::Array(vec![bulk("10.0.0.1"), bulk("6379")])),
            Some(Some(NodeAddr::new("10.0.0.1", 6379).unwrap()))
        );
        assert_eq!(parse_master_addr(&Value::Nil), Some(None));
        assert_eq!(
            parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 6380", "mymaster"),
            Some(NodeAddr::new("10.0.0.2", 6380).unwrap())
        );
        assert_eq!(parse_switch_master("other 1 2 3 4", "mymaster"), None);
        let master = Value::Array(vec![
            bulk("name"),
            bulk("mymaster"),
            bulk("down-after-milliseconds"),
            bulk("30000"),
            bulk("failover-timeout"),
            bulk("180000"),
        ]);
        assert_eq!(
            parse_sentinel_timings(&master),
            Some(SentinelTimings {
                down_after: Duration::from_secs(30),
                failover_timeout: Duration::from_secs(180),
            })
        );
        assert_eq!(parse_sentinel_timings(&Value::Nil), None);
    }
}
