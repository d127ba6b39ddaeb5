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
/// zero-padded: two names are equal when their keys are (no name holds a zero byte), so the
/// table is searched with integer comparisons, no `memcmp`.
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

/// What a command name means for routing. A name not in the table is a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An empty slot of the table: the name is not in it.
    Unknown,
    /// In [`READ_ONLY_COMMANDS`] (`XREAD` has its own kind).
    Read,
    /// `XREAD`: a read, blocking with a `BLOCK` option.
    XRead,
    /// `XREADGROUP`: a write, blocking with a `BLOCK` option.
    XReadGroup,
    /// Blocks for the seconds in its last argument (`BLPOP`, `BLMOVE`, ...).
    BlockSecondsLast,
    /// Blocks for the seconds in its first argument (`BLMPOP`, `BZMPOP`).
    BlockSecondsFirst,
    /// Blocks for the milliseconds in its last argument (`WAIT`, `WAITAOF`).
    BlockMillisLast,
    /// `SELECT`.
    Select,
    /// `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`.
    Transaction,
}

/// The names with a meaning besides "read" or "write".
const SPECIAL: [(&str, Kind); 18] = [
    ("XREAD", Kind::XRead),
    ("XREADGROUP", Kind::XReadGroup),
    ("BLPOP", Kind::BlockSecondsLast),
    ("BRPOP", Kind::BlockSecondsLast),
    ("BRPOPLPUSH", Kind::BlockSecondsLast),
    ("BLMOVE", Kind::BlockSecondsLast),
    ("BZPOPMIN", Kind::BlockSecondsLast),
    ("BZPOPMAX", Kind::BlockSecondsLast),
    ("BLMPOP", Kind::BlockSecondsFirst),
    ("BZMPOP", Kind::BlockSecondsFirst),
    ("WAIT", Kind::BlockMillisLast),
    ("WAITAOF", Kind::BlockMillisLast),
    ("SELECT", Kind::Select),
    ("MULTI", Kind::Transaction),
    ("EXEC", Kind::Transaction),
    ("DISCARD", Kind::Transaction),
    ("WATCH", Kind::Transaction),
    ("UNWATCH", Kind::Transaction),
];

/// Slots of the open-addressing table (a power of two, well above the names it holds, so that
/// most lookups compare one key).
const SLOTS: usize = 512;

/// The slot a key hashes to.
#[inline]
const fn slot(k: &Key) -> usize {
    let x = k[0] ^ k[1].rotate_left(21) ^ k[2].rotate_left(42);
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
}

const fn insert(table: &mut [(Key, Kind); SLOTS], name: &str, kind: Kind) {
    let k = key(name.as_bytes());
    let mut i = slot(&k);
    while !matches!(table[i].1, Kind::Unknown) {
        i = (i + 1) % SLOTS;
    }
    table[i] = (k, kind);
}

/// Every name of [`READ_ONLY_COMMANDS`] and [`SPECIAL`] by key, with linear probing: a lookup
/// ends at its key or at an empty slot.
static TABLE: [(Key, Kind); SLOTS] = {
    let mut table = [([0u64; 3], Kind::Unknown); SLOTS];
    let mut i = 0;
    while i < SPECIAL.len() {
        insert(&mut table, SPECIAL[i].0, SPECIAL[i].1);
        i += 1;
    }
    let mut i = 0;
    while i < READ_ONLY_COMMANDS.len() {
        if !matches!(
            kind_in(&table, &key(READ_ONLY_COMMANDS[i].as_bytes())),
            Kind::XRead
        ) {
            insert(&mut table, READ_ONLY_COMMANDS[i], Kind::Read);
        }
        i += 1;
    }
    table
};

#[inline(always)]
const fn kind_in(table: &[(Key, Kind); SLOTS], k: &Key) -> Kind {
    let mut i = slot(k);
    loop {
        let (key, kind) = table[i];
        if matches!(kind, Kind::Unknown) || (key[0] == k[0] && key[1] == k[1] && key[2] == k[2]) {
            return kind;
        }
        i = (i + 1) % SLOTS;
    }
}

/// Upper-cases the ASCII letters of eight packed bytes at once (as `u8::to_ascii_uppercase`
/// does each byte).
#[inline]
const fn upper(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low7 = w & (0x7f * ONES);
    // The top bit of each byte: at least `a`, above `z`, and (either way) not ASCII.
    let from_a = low7 + (0x80 - b'a' as u64) * ONES;
    let past_z = low7 + (0x80 - b'z' as u64 - 1) * ONES;
    let lower = from_a & !past_z & !w & (0x80 * ONES);
    w - (lower >> 2)
}

/// Up to eight bytes packed big-endian and zero-padded, with at most three loads (no `memcpy`).
#[inline]
fn word(b: &[u8]) -> u64 {
    let n = b.len();
    match n {
        8.. => u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        4..=7 => {
            // Two overlapping four-byte loads; the bytes they share are equal, so `|` is exact.
            let head = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let tail = u64::from(u32::from_be_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]));
            head << 32 | tail << (8 * (8 - n))
        }
        1..=3 => {
            u64::from(b[0]) << 56
                | u64::from(b[n / 2]) << (56 - 8 * (n / 2))
                | u64::from(b[n - 1]) << (56 - 8 * (n - 1))
        }
        0 => 0,
    }
}

/// The key of `name` in any case; `None` when it is too long to be one we know.
#[inline]
fn key_of(name: &[u8]) -> Option<Key> {
    match name.len() {
        0..=8 => Some([upper(word(name)), 0, 0]),
        9..=MAX_NAME => {
            let (first, rest) = name.split_at(8);
            let (second, third) = rest.split_at(rest.len().min(8));
            Some([upper(word(first)), upper(word(second)), upper(word(third))])
        }
        _ => None,
    }
}

/// What `name` means for routing. Inlined, so that the common name of up to eight bytes
/// (`GET`, `SET`, `HGETALL`, ...) is looked up with its other two words known to be zero.
#[inline(always)]
fn kind_of(name: &[u8]) -> Kind {
    if name.len() <= 8 {
        return kind_in(&TABLE, &[upper(word(name)), 0, 0]);
    }
    key_of(name).map_or(Kind::Unknown, |k| kind_in(&TABLE, &k))
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
    matches!(kind_of(name), Kind::Read | Kind::XRead)
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

#[inline]
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
#[inline]
pub(crate) fn route_cmd(cmd: &Cmd) -> Route {
    let Some(name) = name_of(cmd) else {
        return Route::Write;
    };
    match kind_of(name) {
        Kind::Read => Route::Read,
        Kind::Unknown => Route::Write,
        kind => route_special(cmd, kind),
    }
}

/// Routes a command sent on its own: as [`route_cmd`], except that `WAIT` / `WAITAOF` alone
/// are refused (they only mean something after the caller's writes on the same connection).
#[inline]
pub(crate) fn route_single(cmd: &Cmd) -> Route {
    let Some(name) = name_of(cmd) else {
        return Route::Write;
    };
    match kind_of(name) {
        Kind::Read => Route::Read,
        Kind::Unknown => Route::Write,
        // `WAIT` and `WAITAOF`, the only names of this kind.
        Kind::BlockMillisLast => Route::Wait,
        kind => route_special(cmd, kind),
    }
}

/// The route of a command whose name has a meaning besides "read" or "write" (out of line:
/// the common commands never come here).
#[cold]
#[inline(never)]
fn route_special(cmd: &Cmd, kind: Kind) -> Route {
    let last = || simple_args(cmd).last();
    let second = || simple_args(cmd).nth(1);
    match kind {
        Kind::Read => Route::Read,
        Kind::Unknown => Route::Write,
        Kind::XRead => match xread_block(cmd) {
            Some(block) => Route::Blocking { read: true, block },
            None => Route::Read,
        },
        Kind::XReadGroup => match xread_block(cmd) {
            Some(block) => Route::Blocking { read: false, block },
            None => Route::Write,
        },
        Kind::BlockSecondsLast => Route::Blocking {
            read: false,
            block: parse_seconds(last()),
        },
        Kind::BlockSecondsFirst => Route::Blocking {
            read: false,
            block: parse_seconds(second()),
        },
        Kind::BlockMillisLast => Route::Blocking {
            read: false,
            block: parse_millis(last()),
        },
        Kind::Select => Route::Select,
        Kind::Transaction => Route::Transaction,
    }
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
/// time added to the response timeout. A pipeline is sent as one write, so an atomic
/// pipeline's `MULTI` ... `EXEC` and a `WAIT` inside it stay on one connection. `SELECT`, and
/// `MULTI` / `EXEC` / `DISCARD` / `WATCH` / `UNWATCH` given as commands of the pipeline, are
/// refused as when sent alone: a `MULTI` without its `EXEC`, or a `WATCH`, would outlive the
/// pipeline on the shared connection and catch other callers' commands.
pub(crate) fn route_pipeline(pipeline: &Pipeline) -> Route {
    let mut any = false;
    let mut reads_only = true;
    let mut blocking: Option<Option<Duration>> = None;
    for cmd in pipeline.cmd_iter() {
        any = true;
        match route_cmd(cmd) {
            Route::Read => {}
            Route::Select => return Route::Select,
            Route::Transaction => return Route::Transaction,
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
        // Every name is found under its own kind, and the table has room to spare.
        let used = TABLE.iter().filter(|(_, k)| *k != Kind::Unknown).count();
        assert_eq!(used, READ_ONLY_COMMANDS.len() + SPECIAL.len() - 1);
        for (name, kind) in SPECIAL {
            assert_eq!(kind_of(name.as_bytes()), kind, "{name}");
        }
        for name in [
            "",
            "A",
            "ab",
            "abc",
            "abcd",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
        ] {
            assert_eq!(
                key_of(name.as_bytes()),
                Some(key(name.as_bytes())),
                "{name:?}"
            );
        }
        let long = "abcdefghijklmnopqrstuvwx";
        for n in 9..=MAX_NAME {
            assert_eq!(
                key_of(&long.as_bytes()[..n]),
                Some(key(&long.as_bytes()[..n])),
                "{n}"
            );
        }
        for b in 0..=255u8 {
            let word = u64::from_be_bytes([b; 8]);
            assert_eq!(
                upper(word),
                u64::from_be_bytes([b.to_ascii_uppercase(); 8]),
                "{b}"
            );
        }
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
        // Sent alone, every other name routes as it does in a pipeline.
        let names = READ_ONLY_COMMANDS
            .iter()
            .copied()
            .chain(SPECIAL.iter().map(|s| s.0));
        for name in names.chain([
            "SET",
            "set",
            "PING",
            "wait",
            "a-long-unknown-module-command",
        ]) {
            let mut cmd = redis::cmd(name);
            cmd.arg("k").arg(1);
            let expected = if name.eq_ignore_ascii_case("WAIT") || name == "WAITAOF" {
                Route::Wait
            } else {
                route_cmd(&cmd)
            };
            assert_eq!(route_single(&cmd), expected, "{name}");
        }
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

    #[test]
    fn transaction_commands_inside_a_pipeline_are_refused() {
        for name in ["MULTI", "exec", "DISCARD", "WATCH", "UNWATCH"] {
            let mut p = redis::pipe();
            p.cmd(name).set("a", 1);
            assert_eq!(route_pipeline(&p), Route::Transaction, "{name}");
            let mut atomic = redis::pipe();
            atomic.atomic().set("a", 1).cmd(name);
            assert_eq!(route_pipeline(&atomic), Route::Transaction, "{name}");
        }
        // An atomic pipeline's own MULTI / EXEC are not among its commands.
        let mut atomic = redis::pipe();
        atomic.atomic().set("a", 1).incr("b", 1);
        assert_eq!(route_pipeline(&atomic), Route::Write);
    }
}
