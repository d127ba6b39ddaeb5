//! Patroni's `/cluster` answers as Patroni 3.0.2 sent them (captured from a 2-member cluster
//! on etcd 3.4 during a switchover and a killed leader), garbage, and what the authority makes
//! of each.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::authority::{Answer, Decided, Patroni};
use super::builder::api_address;
use super::cluster::{self, Leader};
use super::epoch::Epochs;
use super::http::{self, HttpError};
use super::json::{self, MAX_DEPTH, Value};
use crate::health::HealthTracker;
use crate::route::{Authority, AuthorityError, Record, Router};

const M0: &str = "127.0.0.1:15432";
const M1: &str = "127.0.0.1:15433";

/// Steady state: m0 leads on timeline 3.
const STEADY: &str = r#"{"members": [{"name": "m0", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:18008/patroni", "host": "127.0.0.1", "port": 15432, "timeline": 3}, {"name": "m1", "role": "replica", "state": "running", "api_url": "http://127.0.0.1:18009/patroni", "host": "127.0.0.1", "port": 15433, "timeline": 3, "lag": 0}]}"#;
/// Switchover m1 → m0, in the order `/cluster` showed it.
const SW_BEFORE: &str = r#"{"members": [{"name": "m0", "role": "replica", "state": "running", "api_url": "http://127.0.0.1:18008/patroni", "host": "127.0.0.1", "port": 15432, "timeline": 2, "lag": 0}, {"name": "m1", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:18009/patroni", "host": "127.0.0.1", "port": 15433, "timeline": 2}]}"#;
const SW_STOPPING: &str = r#"{"members": [{"name": "m0", "role": "replica", "state": "running", "api_url": "http://127.0.0.1:18008/patroni", "host": "127.0.0.1", "port": 15432, "timeline": 2, "lag": 0}, {"name": "m1", "role": "leader", "state": "stopping", "api_url": "http://127.0.0.1:18009/patroni", "host": "127.0.0.1", "port": 15433}]}"#;
const SW_NO_LEADER: &str = r#"{"members": [{"name": "m0", "role": "replica", "state": "running", "api_url": "http://127.0.0.1:18008/patroni", "host": "127.0.0.1", "port": 15432, "timeline": 2, "lag": 0}, {"name": "m1", "role": "replica", "state": "stopped", "api_url": "http://127.0.0.1:18009/patroni", "host": "127.0.0.1", "port": 15433, "lag": "unknown"}]}"#;
/// The new leader is named while it still shows the timeline it replicated on ...
const SW_NAMED: &str = r#"{"members": [{"name": "m0", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:18008/patroni", "host": "127.0.0.1", "port": 15432, "timeline": 2}, {"name": "m1", "role": "replica", "state": "stopped", "api_url": "http://127.0.0.1:18009/patroni", "host": "127.0.0.1", "port": 15433, "lag": "unknown"}]}"#;
/// ... and publishes its new one a loop later.
const SW_PROMOTED: &str = r#"{"members": [{"name": "m0", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:18008/patroni", "host": "127.0.0.1", "port": 15432, "timeline": 3}, {"name": "m1", "role": "replica", "state": "starting", "api_url": "http://127.0.0.1:18009/patroni", "host": "127.0.0.1", "port": 15433, "lag": "unknown"}]}"#;
/// m0 killed: its member key expired, no leader yet.
const KILL_NO_LEADER: &str = r#"{"members": [{"name": "m1", "role": "replica", "state": "running", "api_url": "http://127.0.0.1:18009/patroni", "host": "127.0.0.1", "port": 15433, "timeline": 3, "lag": 0}]}"#;
const KILL_NAMED: &str = r#"{"members": [{"name": "m1", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:18009/patroni", "host": "127.0.0.1", "port": 15433, "timeline": 3}]}"#;
const KILL_PROMOTED: &str = r#"{"members": [{"name": "m1", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:18009/patroni", "host": "127.0.0.1", "port": 15433, "timeline": 4}]}"#;
/// The raw answer of Patroni's BaseHTTP server: HTTP/1.0, no Content-Length, closed after.
const RAW: &[u8] = b"HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.6 Python/3.11.2\r\nDate: Wed, 02 Dec 2026 01:14:58 GMT\r\nContent-Type: application/json\r\n\r\n{\"members\": [{\"name\": \"m0\", \"role\": \"leader\", \"state\": \"running\", \"api_url\": \"http://127.0.0.1:18008/patroni\", \"host\": \"127.0.0.1\", \"port\": 15432, \"timeline\": 3}, {\"name\": \"m1\", \"role\": \"replica\", \"state\": \"running\", \"api_url\": \"http://127.0.0.1:18009/patroni\", \"host\": \"127.0.0.1\", \"port\": 15433, \"timeline\": 3, \"lag\": 0}]}";

fn leader(name: &str, addr: &str, timeline: Option<u64>, state: &str) -> Option<Leader> {
    let api = if addr == M0 {
        "127.0.0.1:18008"
    } else {
        "127.0.0.1:18009"
    };
    Some(Leader {
        name: name.into(),
        addr: addr.into(),
        timeline,
        state: state.into(),
        api: Some(api.into()),
    })
}

/// One round of answers, a new leader taken as promoted (its `/patroni` says `master`).
fn decide(p: &Patroni, answers: Vec<Answer>) -> Result<Record<Arc<str>>, AuthorityError> {
    Ok(match p.decide(answers)? {
        Decided::Follow(record) => record,
        Decided::Check(decision, _api) => p.follow_now(decision),
    })
}

fn router(hosts: &[&str]) -> (HealthTracker<Arc<str>>, Router<Arc<str>>) {
    let ids: Vec<Arc<str>> = hosts.iter().map(|h| Arc::from(*h)).collect();
    let t = HealthTracker::new(ids.clone());
    let r = Router::builder(&t).endpoints(ids).build().unwrap();
    (t, r)
}

fn patroni(members: &[&str], hosts: &[&str]) -> Patroni {
    let (_t, r) = router(hosts);
    Patroni::builder()
        .members(members.iter().copied())
        .build(&r)
        .unwrap()
}

fn ok(body: &str) -> Answer {
    Answer::from_response(200, body.as_bytes())
}

fn down() -> Answer {
    Answer::Unreachable("connect: Connection refused (os error 111)".into())
}

#[test]
fn real_cluster_bodies_name_the_leader_its_address_and_timeline() {
    let cases = [
        (STEADY, leader("m0", M0, Some(3), "running"), 2),
        (SW_BEFORE, leader("m1", M1, Some(2), "running"), 2),
        (SW_STOPPING, leader("m1", M1, None, "stopping"), 2),
        (SW_NO_LEADER, None, 2),
        (SW_NAMED, leader("m0", M0, Some(2), "running"), 2),
        (SW_PROMOTED, leader("m0", M0, Some(3), "running"), 2),
        (KILL_NO_LEADER, None, 1),
        (KILL_NAMED, leader("m1", M1, Some(3), "running"), 1),
        (KILL_PROMOTED, leader("m1", M1, Some(4), "running"), 1),
    ];
    for (body, want, members) in cases {
        let view = cluster::parse(body.as_bytes()).unwrap();
        assert_eq!(view.leader, want, "{body}");
        assert_eq!(view.members, members);
    }
    let standby = STEADY.replace("\"leader\"", "\"standby_leader\"");
    let view = cluster::parse(standby.as_bytes()).unwrap();
    assert_eq!(view.leader.unwrap().name, "m0");
    let v6 = STEADY.replace(
        "\"host\": \"127.0.0.1\", \"port\": 15432",
        "\"host\": \"::1\", \"port\": 5432",
    );
    assert_eq!(
        cluster::parse(v6.as_bytes()).unwrap().leader.unwrap().addr,
        "[::1]:5432"
    );
}

#[test]
fn garbage_bodies_are_errors_that_say_what_is_wrong() {
    let two_leaders = STEADY.replace("\"replica\"", "\"leader\"");
    let deep = "[".repeat(100_000);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "not JSON: unexpected end"),
        (
            "<html>502 Bad Gateway</html>".into(),
            "not JSON: unexpected character at byte 0",
        ),
        (STEADY[..STEADY.len() - 3].into(), "not JSON"),
        (format!("{STEADY} x"), "trailing characters"),
        ("{}".into(), "no \"members\""),
        ("{\"members\": {}}".into(), "\"members\" is not an array"),
        (
            "{\"members\": [{\"role\": \"leader\"}]}".into(),
            "member 0 has no \"name\"",
        ),
        (
            "{\"members\": [{\"name\": 7, \"role\": \"leader\"}]}".into(),
            "member 0's \"name\" is not a string",
        ),
        (two_leaders, "two leaders: \"m0\" and \"m1\""),
        (
            STEADY.replace("15432", "70000"),
            "leader \"m0\" has no valid \"port\"",
        ),
        (
            STEADY.replace("15432", "-1"),
            "leader \"m0\" has no valid \"port\"",
        ),
        (
            STEADY.replace("\"host\": \"127.0.0.1\", \"port\": 15432,", ""),
            "member 0 has no \"host\"",
        ),
        (
            STEADY.replacen("\"timeline\": 3", "\"timeline\": \"3\"", 1),
            "leader \"m0\"'s \"timeline\" is a string, not a count",
        ),
        (
            STEADY.replacen("\"timeline\": 3", "\"timeline\": 2.5", 1),
            "leader \"m0\"'s \"timeline\" is a number, not a count",
        ),
        (deep, "nested too deeply"),
    ];
    for (body, want) in cases {
        let err = cluster::parse(body.as_bytes()).unwrap_err();
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
    assert!(
        cluster::parse(&[0xff, 0xfe])
            .unwrap_err()
            .contains("not UTF-8")
    );
}

#[test]
fn json_reads_escapes_numbers_and_literals() {
    let v = json::parse(br#" {"a": "x\"\\\/\n\u00e9\ud83d\ude00", "n": [0, -1, 12.5e-3, 18446744073709551615, 18446744073709551616], "t": true, "f": false, "z": null} "#).unwrap();
    assert_eq!(v.get("a").and_then(Value::as_str), Some("x\"\\/\né😀"));
    let n = v.get("n").and_then(Value::as_array).unwrap();
    assert_eq!(n[0].as_u64(), Some(0));
    assert_eq!(n[1].as_u64(), None);
    assert_eq!(n[2], Value::Number("12.5e-3".into()));
    assert_eq!(n[3].as_u64(), Some(u64::MAX));
    assert_eq!(n[4].as_u64(), None);
    assert_eq!(v.get("t"), Some(&Value::Bool(true)));
    assert_eq!(v.get("f"), Some(&Value::Bool(false)));
    assert_eq!(v.get("z"), Some(&Value::Null));
    for bad in [
        &br#""\ud83d""#[..],
        br#""\x""#,
        b"01",
        b"1.",
        b"-",
        b"[1,]",
        b"{\"a\" 1}",
        b"\"tab\there\"",
        b"tru",
    ] {
        assert!(
            json::parse(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let nested = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    assert!(json::parse(nested.as_bytes()).is_ok());
    let nested = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
    assert!(json::parse(nested.as_bytes()).is_err());
}

#[test]
fn http_answers_are_read_by_length_or_to_the_end() {
    let r = http::parse_response(RAW).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, STEADY.as_bytes());
    let r = http::parse_response(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}extra",
    )
    .unwrap();
    assert_eq!((r.status, &r.body[..]), (503, &b"{}"[..]));
    let err = |raw: &[u8]| http::parse_response(raw).unwrap_err();
    assert!(matches!(err(b""), HttpError::Unreachable(_)));
    assert!(
        matches!(err(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"), HttpError::Unreachable(m) if m == "body cut at 2 of 10 bytes")
    );
    assert_eq!(
        err(b"SSH-2.0-OpenSSH\r\n\r\n"),
        HttpError::Malformed("not an HTTP/1.x answer".into())
    );
    assert_eq!(
        err(b"HTTP/1.1 2000 OK\r\n\r\n"),
        HttpError::Malformed("bad status line".into())
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
        HttpError::Malformed("bad Content-Length".into())
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        HttpError::Malformed("chunked transfer encoding is not supported".into())
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\n"),
        HttpError::Malformed("no end of headers".into())
    );
}

/// A switchover m1 → m0 then a killed m0, answer by answer as `/cluster` showed them: the
/// epoch grows at each new leader, the new leader is followed when it is first named (before
/// it publishes its new timeline), and a stale answer naming an earlier leader is lower.
#[test]
fn epochs_grow_with_each_new_leader_and_a_stale_answer_is_lower() {
    let (m0, m1): (Arc<str>, Arc<str>) = (M0.into(), M1.into());
    let mut e = Epochs::default();
    let t = |tl: u64, n: u64| tl * 65536 + n;
    assert_eq!(e.epoch(&m1, None), None, "no timeline known yet");
    assert_eq!(e.epoch(&m1, Some(2)), Some(t(2, 0)));
    e.follow(&m1, Some(2));
    assert_eq!(
        e.epoch(&m1, None),
        Some(t(2, 0)),
        "stopping: no timeline, same epoch"
    );
    assert_eq!(
        e.epoch(&m0, Some(2)),
        Some(t(2, 1)),
        "named before its promotion"
    );
    e.follow(&m0, Some(2));
    assert_eq!(e.current(), Some(&m0));
    assert_eq!(
        e.epoch(&m1, Some(2)),
        Some(t(2, 0)),
        "stale: the earlier leader, lower"
    );
    assert_eq!(e.epoch(&m0, Some(3)), Some(t(3, 0)), "promoted");
    e.follow(&m0, Some(3));
    e.follow(&m1, Some(2));
    assert_eq!(e.current(), Some(&m0), "a lower answer changes nothing");
    assert_eq!(e.epoch(&m1, Some(3)), Some(t(3, 1)));
    e.follow(&m1, Some(3));
    assert_eq!(e.epoch(&m1, Some(4)), Some(t(4, 0)));
    assert_eq!(
        e.epoch(&m0, Some(1)),
        Some(t(1, 0)),
        "going back a timeline"
    );
}

#[test]
fn a_switchover_read_answer_by_answer_follows_each_leader_once() {
    let p = patroni(&["127.0.0.1:18008"], &[M0, M1]);
    let read = |body: &str| decide(&p, vec![ok(body)]);
    let first = read(SW_BEFORE).unwrap();
    assert_eq!((&**first.primary(), first.epoch()), (M1, 2 << 16));
    assert_eq!(read(SW_STOPPING).unwrap().epoch(), 2 << 16);
    let gap = read(SW_NO_LEADER).unwrap_err();
    assert!(!gap.is_unparsable());
    assert_eq!(gap.reason(), "127.0.0.1:18008: no leader");
    let named = read(SW_NAMED).unwrap();
    assert_eq!((&**named.primary(), named.epoch()), (M0, (2 << 16) + 1));
    assert_eq!(
        named.reason(),
        Some("patroni leader \"m0\" (running, timeline 2) per 127.0.0.1:18008")
    );
    let promoted = read(SW_PROMOTED).unwrap();
    assert_eq!((&**promoted.primary(), promoted.epoch()), (M0, 3 << 16));
    let stale = read(SW_BEFORE).unwrap();
    assert_eq!(
        (&**stale.primary(), stale.epoch()),
        (M1, 2 << 16),
        "lower: the follower rejects it"
    );
    assert_eq!(
        read(STEADY).unwrap().epoch(),
        3 << 16,
        "a stale answer moved nothing"
    );
    assert!(read(KILL_NO_LEADER).is_err());
    let killed = read(KILL_NAMED).unwrap();
    assert_eq!((&**killed.primary(), killed.epoch()), (M1, (3 << 16) + 1));
    assert_eq!(read(KILL_PROMOTED).unwrap().epoch(), 4 << 16);
}

#[test]
fn among_several_members_the_highest_epoch_wins_and_bad_answers_are_ignored() {
    let members = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"];
    let p = patroni(&members, &[M0, M1]);
    assert_eq!(
        &**decide(&p, vec![ok(SW_BEFORE), ok(SW_BEFORE), ok(SW_BEFORE)])
            .unwrap()
            .primary(),
        M1
    );
    // One member still shows the old leader, one the new one, one is down.
    let r = decide(&p, vec![ok(SW_BEFORE), ok(SW_NAMED), down()]).unwrap();
    assert_eq!((&**r.primary(), r.epoch()), (M0, (2 << 16) + 1));
    // Garbage, an HTTP error and a refused connect beside one good answer.
    let r = decide(
        &p,
        vec![
            ok("not json"),
            Answer::from_response(503, b""),
            ok(SW_PROMOTED),
        ],
    )
    .unwrap();
    assert_eq!((&**r.primary(), r.epoch()), (M0, 3 << 16));
    let all_bad = decide(
        &p,
        vec![ok("{}"), Answer::from_response(500, b"oops"), down()],
    )
    .unwrap_err();
    assert!(all_bad.is_unparsable());
    assert_eq!(
        all_bad.reason(),
        "127.0.0.1:1: /cluster body: no \"members\"; 127.0.0.1:2: /cluster answered HTTP 500; \
         127.0.0.1:3: connect: Connection refused (os error 111)"
    );
    let all_down = decide(&p, vec![down(), down(), down()]).unwrap_err();
    assert!(!all_down.is_unparsable());
    let leaderless = decide(&p, vec![ok(SW_NO_LEADER), ok("[]"), down()]).unwrap_err();
    assert!(
        !leaderless.is_unparsable(),
        "one member answered: Patroni has no leader now"
    );
}

#[test]
fn a_leader_at_an_address_the_pool_does_not_route_is_named_as_is() {
    let p = patroni(&["127.0.0.1:18008"], &["db-a:5432", "db-b:5432"]);
    let r = decide(&p, vec![ok(STEADY)]).unwrap();
    assert_eq!(
        &**r.primary(),
        M0,
        "the follower rejects it as an unknown endpoint"
    );
    assert_eq!(r.epoch(), 3 << 16);
}

#[tokio::test]
async fn bad_configuration_is_refused_when_built() {
    let (_t, r) = router(&[M0]);
    let field = |b: super::PatroniBuilder| b.build(&r).unwrap_err().field();
    assert_eq!(field(Patroni::builder()), "members");
    for bad in [
        "",
        "db",
        "db:",
        "db:0",
        "db:99999",
        "https://db:8008",
        "http://db:8008/cluster",
        "::1:8008",
        "u@db:8008",
    ] {
        assert_eq!(field(Patroni::builder().member(bad)), "members", "{bad:?}");
    }
    assert_eq!(
        field(
            Patroni::builder()
                .member("db:8008")
                .request_timeout(Duration::ZERO)
        ),
        "request_timeout"
    );
    for (given, want) in [
        ("db:8008", "db:8008"),
        ("http://db:8008/", "db:8008"),
        (" [::1]:8008", "[::1]:8008"),
    ] {
        assert_eq!(api_address(given).unwrap(), want);
    }
}

/// Serves `answers` on 127.0.0.1, one per connection, then closes.
async fn scripted_api(answers: Vec<&'static [u8]>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        for answer in answers {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer).await;
        }
    });
    addr
}

#[tokio::test]
async fn read_asks_each_member_over_http_and_ignores_one_that_sends_garbage() {
    let good = scripted_api(vec![RAW, RAW]).await;
    let garbage = scripted_api(vec![
        b"HTTP/1.0 200 OK\r\n\r\n{\"members\": [",
        b"\x16\x03\x01",
    ])
    .await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let p = patroni(&[&garbage, &good, &closed], &[M0, M1]);
    for _ in 0..2 {
        let r = p.read().await.unwrap();
        assert_eq!((&**r.primary(), r.epoch()), (M0, 3 << 16));
    }
}

#[test]
fn a_members_patroni_answer_says_whether_its_postgres_is_promoted() {
    let primary = br#"{"state": "running", "role": "master", "server_version": 150018, "timeline": 3, "patroni": {"version": "3.0.2", "scope": "swtry"}}"#;
    let replica = br#"{"state": "running", "role": "replica", "timeline": 2}"#;
    assert_eq!(cluster::promoted(primary), Some((true, Some(3))));
    assert_eq!(
        cluster::promoted(br#"{"role": "primary"}"#),
        Some((true, None))
    );
    assert_eq!(
        cluster::promoted(br#"{"role": "standby_leader"}"#),
        Some((true, None))
    );
    assert_eq!(cluster::promoted(replica), Some((false, Some(2))));
    assert_eq!(cluster::promoted(b"{}"), None);
    assert_eq!(cluster::promoted(b"garbage"), None);
}

/// A leader's `/patroni` answering `replica`.
const REPLICA: &[u8] = b"HTTP/1.0 200 OK\r\n\r\n{\"role\": \"replica\"}";
/// A leader's `/patroni` answering `master` on timeline 3.
const MASTER_TL3: &[u8] = b"HTTP/1.0 200 OK\r\n\r\n{\"role\": \"master\", \"timeline\": 3}";

/// A `/cluster` API answering `body` `times` times, its leader's `api_url` pointing to a
/// scripted `/patroni` answering `leader_answers`.
async fn cluster_api_with_leader_api(
    body: &str,
    times: usize,
    leader_answers: Vec<&'static [u8]>,
) -> String {
    let leader_api = scripted_api(leader_answers).await;
    let body = body.replace(
        "http://127.0.0.1:18008/patroni",
        &format!("http://{leader_api}/patroni"),
    );
    let raw: &'static [u8] = format!("HTTP/1.0 200 OK\r\n\r\n{body}").into_bytes().leak();
    scripted_api(vec![raw; times]).await
}

/// Feeds `p` a switchover: m0 led on timeline 2, then m1 was named on it; what `p` followed
/// last (m1).
fn switched_over_to_m1_on_timeline_2(p: &Patroni) -> Record<Arc<str>> {
    decide(
        p,
        vec![ok(SW_PROMOTED
            .replace("\"timeline\": 3", "\"timeline\": 2")
            .as_str())],
    )
    .unwrap();
    decide(p, vec![ok(SW_BEFORE)]).unwrap()
}

/// A new leader whose `/patroni` still says `replica` is not followed yet (the pool's role
/// probes would see a standby); once it says `master`, it is.
#[tokio::test]
async fn a_new_leader_is_followed_once_its_api_says_it_is_promoted() {
    const MASTER: &[u8] = b"HTTP/1.0 200 OK\r\n\r\n{\"role\": \"master\"}";
    let cluster_api = cluster_api_with_leader_api(STEADY, 3, vec![REPLICA, MASTER]).await;
    let p = patroni(&[&cluster_api], &[M0, M1]);
    let err = p.read().await.unwrap_err();
    assert_eq!(
        err.reason(),
        "leader \"m0\" named, its Postgres not promoted yet"
    );
    let r = p.read().await.unwrap();
    assert_eq!((&**r.primary(), r.epoch()), (M0, 3 << 16));
    // Followed: the same leader is not checked again.
    assert_eq!(p.read().await.unwrap().epoch(), 3 << 16);
}

/// A former leader named again before `/cluster` shows its new timeline (the old leader killed
/// right after a switchover to it): its own `/patroni` gives the new timeline, so the epoch
/// grows and it is followed at once instead of looking like a stale answer.
#[tokio::test]
async fn a_former_leader_named_again_is_followed_on_the_timeline_it_runs_on() {
    let cluster_api = cluster_api_with_leader_api(SW_NAMED, 1, vec![MASTER_TL3]).await;
    let p = patroni(&[&cluster_api], &[M0, M1]);
    let m1 = switched_over_to_m1_on_timeline_2(&p);
    assert_eq!((&**m1.primary(), m1.epoch()), (M1, (2 << 16) + 1));
    let r = p.read().await.unwrap();
    assert_eq!((&**r.primary(), r.epoch()), (M0, 3 << 16));
}

/// Given to the pool's knob, a new leader is followed at once, before its `/patroni` says it is
/// promoted (the pool's role probe confirms it); a former leader named again still gets the
/// timeline it runs on from its own API.
#[tokio::test]
async fn following_when_named_does_not_wait_for_the_promotion() {
    let cluster_api = cluster_api_with_leader_api(STEADY, 1, vec![REPLICA]).await;
    let p = patroni(&[&cluster_api], &[M0, M1]).follow_when_named();
    let r = p.read().await.unwrap();
    assert_eq!((&**r.primary(), r.epoch()), (M0, 3 << 16));

    let cluster_api = cluster_api_with_leader_api(SW_NAMED, 1, vec![MASTER_TL3]).await;
    let p = patroni(&[&cluster_api], &[M0, M1]).follow_when_named();
    switched_over_to_m1_on_timeline_2(&p);
    let r = p.read().await.unwrap();
    assert_eq!((&**r.primary(), r.epoch()), (M0, 3 << 16));
}
