//! Which node a command may run on: the routing table.

use std::time::Duration;

use redis::{Arg, Cmd, Pipeline};

/// The commands the pool sends to a replica, sorted, upper case.
///
/// Each is flagged `readonly` in the Redis 7 command table (`COMMAND INFO`) and reads only keys
/// (never writes, never stores a result): string, hash, list, set, sorted-set, stream, geo,
/// bitmap and HyperLogLog reads, the `SCAN` family, key metadata (`EXISTS`, `TTL`, `TYPE`, ...)
/// and the `_RO` variants of scripts, functions, `SORT` and `GEORADIUS`. Anything not listed
/// (module commands, server commands, `PING`, unknown names) goes to the primary.
pub const READ_ONLY_COMMANDS: &[&str] = &[
    "BITCOUNT",
    "BITFIELD_RO",
    "BITPOS",
    "DBSIZE",
    "DUMP",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXISTS",
    "EXPIRETIME",
    "FCALL_RO",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GET",
    "GETBIT",
    "GETRANGE",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HRANDFIELD",
    "HSCAN",
    "HSTRLEN",
    "HVALS",
    "KEYS",
    "LCS",
    "LINDEX",
    "LLEN",
    "LPOS",
    "LRANGE",
    "MGET",
    "PEXPIRETIME",
    "PFCOUNT",
    "PTTL",
    "RANDOMKEY",
    "SCAN",
    "SCARD",
    "SDIFF",
    "SINTER",
    "SINTERCARD",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SORT_RO",
    "SRANDMEMBER",
    "SSCAN",
    "STRLEN",
    "SUBSTR",
    "SUNION",
    "TOUCH",
    "TTL",
    "TYPE",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREVRANGE",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZINTER",
    "ZINTERCARD",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
];

/// The longest command name compared (longer names are never read-only).
const MAX_NAME: usize = 24;

/// A command name (at most [`MAX_NAME`] bytes, upper case) packed big-endian into three words,
/// zero-padded: comparing keys orders names as comparing the strings does (no name holds a zero
/// byte), so the table is searched with three integer comparisons a step, no `memcmp`.
type Key = [u64; 3];

const fn key(name: &[u8]) -> Key {
    let mut k = [0u64; 3];
    let mut i = 0;
    while i < name.len() {
        k[i / 8] |= (name[i].to_ascii_uppercase() as u64) << (56 - 8 * (i % 8));
        i += 1;
    }
    k
}

/// [`READ_ONLY_COMMANDS`] as keys, in the same (sorted) order.
const READ_ONLY_KEYS: [Key; READ_ONLY_COMMANDS.len()] = {
    let mut keys = [[0u64; 3]; READ_ONLY_COMMANDS.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = key(READ_ONLY_COMMANDS[i].as_bytes());
        i += 1;
    }
    keys
};

/// The key of `name` in any case; `None` when it is too long to be one we know.
#[inline]
fn key_of(name: &[u8]) -> Option<Key> {
    (name.len() <= MAX_NAME).then(|| key(name))
}

#[inline]
fn is_read_only_key(k: &Key) -> bool {
    READ_ONLY_KEYS.binary_search(k).is_ok()
}

/// `true` when the command `name` (any case) is in [`READ_ONLY_COMMANDS`].
///
/// ```
/// use switchover::redis::is_read_only;
/// assert!(is_read_only(b"get"));
/// assert!(is_read_only(b"ZRangeByScore"));
/// assert!(!is_read_only(b"SET"));
/// assert!(!is_read_only(b"MY.MODULE.GET"));
/// ```
pub fn is_read_only(name: &[u8]) -> bool {
    key_of(name).is_some_and(|k| is_read_only_key(&k))
}

fn eq_upper(name: &[u8], expected: &str) -> bool {
    name.eq_ignore_ascii_case(expected.as_bytes())
}

/// Where one command (or a whole pipeline) may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A read: a replica (by the read policy), falling back to the primary.
    Read,
    /// A write or anything unknown: the primary.
    Write,
    /// A blocking command: a dedicated connection, with a response timeout extended by the
    /// command's own block time (`None`: it blocks without limit).
    Blocking { read: bool, block: Option<Duration> },
    /// `SELECT`: refused, it would change the database of one shared connection only.
    Select,
    /// `MULTI` / `EXEC` / `DISCARD` / `WATCH` / `UNWATCH` sent as separate commands: refused, on
    /// a shared connection they would queue other callers' commands into the transaction.
    Transaction,
    /// `WAIT` / `WAITAOF` sent alone: refused, Redis counts the acknowledgements of the
    /// connection's own writes, so on a connection of its own it would report durability that
    /// did not happen.
    Wait,
}

fn name_of(cmd: &Cmd) -> Option<&[u8]> {
    match cmd.args_iter().next()? {
        Arg::Simple(name) => Some(name),
        _ => None,
    }
}

fn simple_args(cmd: &Cmd) -> impl Iterator<Item = &[u8]> {
    cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(s) => Some(s),
        _ => None,
    })
}

fn parse_seconds(arg: Option<&[u8]>) -> Option<Duration> {
    let s = std::str::from_utf8(arg?).ok()?;
    let secs: f64 = s.trim().parse().ok()?;
    if !secs.is_finite() || secs <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

fn parse_millis(arg: Option<&[u8]>) -> Option<Duration> {
    let s = std::str::from_utf8(arg?).ok()?;
    let ms: u64 = s.trim().parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Routes one command by its name (and, for `XREAD`/`XREADGROUP`, its `BLOCK` option).
pub(crate) fn route_cmd(cmd: &Cmd) -> Route {
    const XREAD: Key = key(b"XREAD");
    const BLPOP: Key = key(b"BLPOP");
    const BRPOP: Key = key(b"BRPOP");
    const BRPOPLPUSH: Key = key(b"BRPOPLPUSH");
    const BLMOVE: Key = key(b"BLMOVE");
    const BZPOPMIN: Key = key(b"BZPOPMIN");
    const BZPOPMAX: Key = key(b"BZPOPMAX");
    const BLMPOP: Key = key(b"BLMPOP");
    const BZMPOP: Key = key(b"BZMPOP");
    const WAIT: Key = key(b"WAIT");
    const WAITAOF: Key = key(b"WAITAOF");
    const XREADGROUP: Key = key(b"XREADGROUP");
    const SELECT: Key = key(b"SELECT");
    const MULTI: Key = key(b"MULTI");
    const EXEC: Key = key(b"EXEC");
    const DISCARD: Key = key(b"DISCARD");
    const WATCH: Key = key(b"WATCH");
    const UNWATCH: Key = key(b"UNWATCH");
    let Some(k) = name_of(cmd).and_then(key_of) else {
        return Route::Write;
    };
    if is_read_only_key(&k) {
        if k == XREAD
            && let Some(block) = xread_block(cmd)
        {
            return Route::Blocking { read: true, block };
        }
        return Route::Read;
    }
    let last = || simple_args(cmd).last();
    let second = || simple_args(cmd).nth(1);
    match k {
        BLPOP | BRPOP | BRPOPLPUSH | BLMOVE | BZPOPMIN | BZPOPMAX => Route::Blocking {
            read: false,
            block: parse_seconds(last()),
        },
        BLMPOP | BZMPOP => Route::Blocking {
            read: false,
            block: parse_seconds(second()),
        },
        WAIT | WAITAOF => Route::Blocking {
            read: false,
            block: parse_millis(last()),
        },
        XREADGROUP => match xread_block(cmd) {
            Some(block) => Route::Blocking { read: false, block },
            None => Route::Write,
        },
        SELECT => Route::Select,
        MULTI | EXEC | DISCARD | WATCH | UNWATCH => Route::Transaction,
        _ => Route::Write,
    }
}

/// Routes a command sent on its own: as [`route_cmd`], except that `WAIT` / `WAITAOF` alone
/// are refused (they only mean something after the caller's writes on the same connection).
pub(crate) fn route_single(cmd: &Cmd) -> Route {
    match route_cmd(cmd) {
        Route::Blocking { .. } if is_wait(cmd) => Route::Wait,
        route => route,
    }
}

fn is_wait(cmd: &Cmd) -> bool {
    name_of(cmd).is_some_and(|n| eq_upper(n, "WAIT") || eq_upper(n, "WAITAOF"))
}

/// `Some(block)` when an `XREAD`/`XREADGROUP` has a `BLOCK ms` option.
fn xread_block(cmd: &Cmd) -> Option<Option<Duration>> {
    let mut args = simple_args(cmd).skip(1);
    while let Some(a) = args.next() {
        if eq_upper(a, "STREAMS") {
            return None;
        }
        if eq_upper(a, "BLOCK") {
            return Some(parse_millis(args.next()));
        }
    }
    None
}

/// Routes a pipeline or transaction: to a replica only when every command is a read; to a
/// dedicated connection of the primary when a command blocks (`BLPOP`, `WAIT` after the
/// pipeline's writes, ...), so it never stalls the shared connection, with the longest block
/// time added to the response timeout. A pipeline is sent as one write, so `MULTI` ... `EXEC`
/// and `WAIT` inside it stay on one connection.
pub(crate) fn route_pipeline(pipeline: &Pipeline) -> Route {
    let mut any = false;
    let mut reads_only = true;
    let mut blocking: Option<Option<Duration>> = None;
    for cmd in pipeline.cmd_iter() {
        any = true;
        match route_cmd(cmd) {
            Route::Read => {}
            Route::Select => return Route::Select,
            Route::Blocking { block, .. } => {
                reads_only = false;
                blocking = Some(match (blocking, block) {
                    // Unlimited wins; otherwise the longest block time.
                    (Some(None), _) | (_, None) => None,
                    (Some(Some(a)), Some(b)) => Some(a.max(b)),
                    (None, Some(b)) => Some(b),
                });
            }
            _ => reads_only = false,
        }
    }
    match blocking {
        Some(block) => Route::Blocking { read: false, block },
        None if any && reads_only => Route::Read,
        None => Route::Write,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_upper_case_and_short() {
        let mut sorted = READ_ONLY_COMMANDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, READ_ONLY_COMMANDS);
        for name in READ_ONLY_COMMANDS {
            assert_eq!(*name, name.to_ascii_uppercase());
            assert!(name.len() <= MAX_NAME);
            assert!(name.bytes().all(|b| b != 0));
        }
        // The packed keys keep the table's order, so they can be binary-searched.
        assert!(READ_ONLY_KEYS.windows(2).all(|w| w[0] < w[1]));
        for name in READ_ONLY_COMMANDS {
            assert!(is_read_only(name.to_ascii_lowercase().as_bytes()), "{name}");
        }
        for not in [
            "SET",
            "GETSET",
            "GETDEL",
            "GE",
            "",
            "XREADGROUP",
            "SORT",
            "EVAL",
        ] {
            assert!(!is_read_only(not.as_bytes()), "{not}");
        }
        assert!(!is_read_only(&[b'A'; MAX_NAME + 1]));
    }

    #[test]
    fn commands_route_by_name_in_any_case() {
        assert_eq!(route_cmd(redis::cmd("get").arg("k")), Route::Read);
        assert_eq!(route_cmd(redis::cmd("HGetAll").arg("k")), Route::Read);
        assert_eq!(route_cmd(redis::cmd("SET").arg("k").arg(1)), Route::Write);
        assert_eq!(
            route_cmd(redis::cmd("EVAL").arg("return 1").arg(0)),
            Route::Write
        );
        assert_eq!(
            route_cmd(redis::cmd("EVAL_RO").arg("return 1").arg(0)),
            Route::Read
        );
        assert_eq!(route_cmd(redis::cmd("SORT").arg("k")), Route::Write);
        assert_eq!(
            route_cmd(&redis::cmd("a-very-long-unknown-command-name")),
            Route::Write
        );
        assert_eq!(route_cmd(&redis::Cmd::new()), Route::Write);
        assert_eq!(route_cmd(redis::cmd("SELECT").arg(1)), Route::Select);
        for name in ["MULTI", "exec", "DISCARD", "WATCH", "UNWATCH"] {
            assert_eq!(route_cmd(&redis::cmd(name)), Route::Transaction, "{name}");
        }
        assert_eq!(
            route_single(redis::cmd("WAIT").arg(1).arg(100)),
            Route::Wait
        );
        assert_eq!(
            route_single(redis::cmd("waitaof").arg(1).arg(0).arg(100)),
            Route::Wait
        );
        assert_eq!(
            route_single(redis::cmd("BLPOP").arg("k").arg(1)),
            Route::Blocking {
                read: false,
                block: Some(Duration::from_secs(1))
            }
        );
        // In a pipeline, WAIT follows the pipeline's own writes on one dedicated connection.
        let mut p = redis::pipe();
        p.cmd("SET").arg("k").arg("v").cmd("WAIT").arg(1).arg(250);
        assert_eq!(
            route_pipeline(&p),
            Route::Blocking {
                read: false,
                block: Some(Duration::from_millis(250))
            }
        );
        let mut p = redis::pipe();
        p.cmd("GET").arg("k").cmd("BLPOP").arg("q").arg(0);
        assert_eq!(
            route_pipeline(&p),
            Route::Blocking {
                read: false,
                block: None
            }
        );
    }

    #[test]
    fn blocking_commands_carry_their_block_time() {
        assert_eq!(
            route_cmd(redis::cmd("BLPOP").arg("a").arg("b").arg("1.5")),
            Route::Blocking {
                read: false,
                block: Some(Duration::from_millis(1500))
            }
        );
        assert_eq!(
            route_cmd(redis::cmd("BLPOP").arg("a").arg(0)),
            Route::Blocking {
                read: false,
                block: None
            }
        );
        assert_eq!(
            route_cmd(redis::cmd("BLMPOP").arg(2).arg(1).arg("k").arg("LEFT")),
            Route::Blocking {
                read: false,
                block: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            route_cmd(
                redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(250)
                    .arg("STREAMS")
                    .arg("s")
                    .arg("$")
            ),
            Route::Blocking {
                read: true,
                block: Some(Duration::from_millis(250))
            }
        );
        assert_eq!(
            route_cmd(redis::cmd("XREAD").arg("STREAMS").arg("block").arg("0")),
            Route::Read
        );
        assert_eq!(
            route_cmd(redis::cmd("WAIT").arg(1).arg(100)),
            Route::Blocking {
                read: false,
                block: Some(Duration::from_millis(100))
            }
        );
    }

    #[test]
    fn pipelines_with_any_write_go_to_the_primary() {
        let mut reads = redis::pipe();
        reads.get("a").get("b").hgetall("h");
        assert_eq!(route_pipeline(&reads), Route::Read);

        let mut mixed = redis::pipe();
        mixed.atomic().get("a").set("b", 1);
        assert_eq!(route_pipeline(&mixed), Route::Write);

        assert_eq!(route_pipeline(&redis::pipe()), Route::Write);
    }
}
