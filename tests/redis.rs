//! The `kv_server` example against redis-server 7.0 itself and real Redis
//! clients nobody here wrote, in both serving modes:
//!
//! * a table of raw requests sent to a real `redis-server` and to
//!   `kv_server`, each reply compared byte for byte (errors, arity, wrong
//!   types, injected control characters, HTTP requests, pub/sub on one
//!   connection), and pub/sub sequences over several connections, glob
//!   patterns and expiry compared the same way;
//! * `redis-cli` for each command and for `subscribe` and `publish`,
//!   `redis-benchmark` with 200 simultaneous persistent clients, and
//!   redis-py (Python) giving the same answers from both servers;
//! * a subscriber that does not read is cut and removed, and a client
//!   sending one endless line does not grow the server.
//!
//! A test needing an outside program (Debian's `redis-server`,
//! `redis-tools`, `python3` and `python3-redis`; `.ci/run` installs them)
//! is skipped with one line when it is missing, unless
//! `SOCKETSERVER_TEST_REQUIRE_ALL` is set.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::kv::*;
use common::*;

/// One request of the table, sent on a connection of its own.
struct Case {
    what: &'static str,
    request: Vec<u8>,
    /// Where the two servers must differ: why, and each one's reply.
    differs: Option<(&'static str, &'static [u8], &'static [u8])>,
    /// A further check of kv_server's reply.
    check: Option<fn(&[u8])>,
}

#[derive(Default)]
struct Table(Vec<Case>);

impl Table {
    fn same(&mut self, what: &'static str, request: impl Into<Vec<u8>>) -> &mut Case {
        self.0.push(Case {
            what,
            request: request.into(),
            differs: None,
            check: None,
        });
        self.0.last_mut().unwrap()
    }
}

/// The table: requests in order, on one keyspace (each server starts
/// empty), each on a connection of its own.
fn table() -> Vec<Case> {
    let mut t = Table::default();
    // The connection.
    t.same("PING", r("PING"));
    t.same("PING with a message", cmd(&["ping", "hello there"]));
    t.same("PING with two (arity)", r("PING a b"));
    t.same("inline PING", "PING\r\n");
    t.same(
        "inline ECHO, quotes and escapes",
        "ECHO \"a\\x41\\x4g\\n\\z\" \r\n",
    );
    t.same(
        "inline: a closing quote not followed by a blank",
        "ECHO \"x\"y\r\n",
    );
    t.same("inline: unbalanced quotes", "ECHO 'unterminated\r\n");
    t.same("inline: single quotes with \\'", "ECHO 'it\\'s'\r\n");
    t.same("empty lines, then an LF-only PING", "\r\n\r\n   \r\nPING\n");
    t.same("ECHO without its argument", r("ECHO"));
    t.same("QUIT: OK, the PING after it not run", "QUIT\r\nPING\r\n");
    t.same("QUIT takes arguments", r("QUIT now"));
    t.same("pipelined SET, GET, DEL", r("SET p 1; GET p; DEL p"));
    // AUTH, no password configured.
    t.same("AUTH password", r("AUTH secret")).check =
        Some(|reply| assert!(!show(reply).contains("secret"), "{}", show(reply)));
    t.same("AUTH default anything", r("AUTH default anything"));
    t.same("AUTH someone password", r("AUTH someone secret"));
    t.same("AUTH with three arguments", r("AUTH a b c"));
    t.same("AUTH alone (arity)", r("AUTH"));
    // Strings.
    t.same("SET", r("SET k v"));
    t.same("GET", r("GET k"));
    t.same("GET a missing key", r("GET missing"));
    t.same("GET (arity)", r("GET"));
    t.same("SET key (arity)", r("SET k"));
    t.same("SET NX on a key that exists", r("SET k w NX"));
    t.same("SET NX on a new key", r("SET k2 w nx"));
    t.same("SET XX on a key that exists", r("SET k v1 XX"));
    t.same("SET XX on a missing key", r("SET nothere v XX"));
    t.same("SET NX XX", r("SET k v NX XX"));
    t.same("SET GET", r("SET k v2 GET"));
    t.same("SET GET on a new key", r("SET fresh v GET"));
    t.same("SET GET NX on a key that exists", r("SET k no GET NX"));
    t.same("SET GET GET", r("SET k v3 GET GET"));
    t.same("SET EX 0", r("SET k v EX 0"));
    t.same("SET EX -5", r("SET k v EX -5"));
    t.same("SET EX not a number", r("SET k v EX soon"));
    t.same("SET PX past i64", r("SET k v PX 9223372036854775807"));
    t.same("SET EX past i64 in ms", r("SET k v EX 9223372036854776"));
    t.same("SET EX then PX", r("SET k v EX 10 PX 10"));
    t.same("SET KEEPTTL then EX", r("SET k v KEEPTTL EX 5"));
    t.same("SET EX without its number", r("SET k v EX"));
    t.same("SET with an unknown option", r("SET k v FOREVER"));
    t.same("SET EX 100, TTL", r("SET t v EX 100; TTL t"));
    t.same("SET KEEPTTL keeps it", r("SET t w KEEPTTL; TTL t"));
    t.same("SET clears it", r("SET t x; TTL t"));
    t.same(
        "SET EXAT in the past: gone",
        r("SET e v EXAT 1; GET e; EXISTS e"),
    );
    // Counters.
    t.same("INCR a new key", r("INCR n"));
    t.same("INCR twice", r("INCR n; incr n"));
    t.same("DECR", r("DECR n"));
    t.same("INCRBY", r("INCRBY n 10"));
    t.same("DECRBY", r("DECRBY n 3"));
    t.same("DECRBY below zero", r("DECRBY n 100"));
    t.same("INCRBY not a number", r("INCRBY n ten"));
    t.same("INCRBY +1", r("INCRBY n +1"));
    t.same("INCRBY (arity)", r("INCRBY n"));
    t.same("INCR of a word", r("INCR k"));
    t.same(
        "INCR past i64::MAX",
        r("SET big 9223372036854775807; INCR big"),
    );
    t.same(
        "DECR past i64::MIN",
        r("SET small -9223372036854775808; DECR small"),
    );
    t.same("DECRBY i64::MIN", r("DECRBY n -9223372036854775808"));
    t.same(
        "INCRBY i64::MAX on 5",
        r("SET pos 5; INCRBY pos 9223372036854775807"),
    );
    t.same(
        "INCR of ' 1'",
        [cmd(&["SET", "s", " 1"]), r("INCR s")].concat(),
    );
    t.same(
        "INCR of 01, -0, 21 digits",
        r("SET s 01; INCR s; SET s -0; INCR s; SET s 100000000000000000000; INCR s"),
    );
    // Several keys.
    t.same("MSET", r("MSET a 1 b 2"));
    t.same("MSET with a key left over", r("MSET a 1 b"));
    t.same("MSET alone", r("MSET"));
    t.same("MGET", r("MGET a b missing a"));
    t.same("MGET (arity)", r("MGET"));
    t.same("DEL", r("DEL a b missing a"));
    t.same("DEL (arity)", r("DEL"));
    t.same("EXISTS counts a key named twice", r("EXISTS k k missing"));
    t.same("TYPE", r("TYPE k; TYPE missing"));
    // Deadlines.
    t.same("EXPIRE, TTL", r("EXPIRE k 100; TTL k"));
    t.same("EXPIRE a missing key", r("EXPIRE missing 10"));
    t.same("EXPIRE not a number", r("EXPIRE k later"));
    t.same("EXPIRE NX, XX", r("EXPIRE k 50 NX; EXPIRE k 200 xx; TTL k"));
    t.same(
        "EXPIRE GT, LT",
        r("EXPIRE k 100 GT; EXPIRE k 300 GT; EXPIRE k 400 LT; EXPIRE k 150 lt; TTL k"),
    );
    t.same(
        "EXPIRE GT, LT without a deadline",
        r("EXPIRE k2 10 GT; EXPIRE k2 10 LT; PERSIST k2"),
    );
    t.same(
        "EXPIRE NX XX, GT LT",
        r("EXPIRE k 1 NX XX; EXPIRE k 1 GT LT"),
    );
    t.same("EXPIRE with an unknown option", r("EXPIRE k 10 SOON"));
    t.same(
        "EXPIRE, an option with CR LF",
        cmd(&["EXPIRE", "k", "10", "a\r\nb\r\n"]),
    );
    t.same("EXPIRE past i64 in ms", r("EXPIRE k 9223372036854775807"));
    t.same("EXPIRE (arity)", r("EXPIRE k"));
    t.same("PERSIST, TTL, PERSIST", r("PERSIST k; TTL k; PERSIST k"));
    t.same("PEXPIRE, TTL", r("PEXPIRE k 100000; TTL k"));
    t.same(
        "TTL and PTTL, no key or no deadline",
        r("TTL missing; PTTL missing; PTTL fresh"),
    );
    t.same(
        "EXPIRE -1 deletes",
        r("SET gone v; EXPIRE gone -1; EXISTS gone"),
    );
    // Hashes, and the wrong type.
    t.same("HSET two fields", r("HSET h f v g w"));
    t.same("HSET a field again", r("HSET h f v2"));
    t.same("HSET with a field left over (arity)", r("HSET h f v g"));
    t.same("HSET (arity)", r("HSET h f"));
    t.same(
        "HGET, HLEN",
        r("HGET h f; HGET h nope; HGET missing f; HLEN h"),
    );
    t.same(
        "wrong types",
        r("GET h; INCR h; SET h x GET; MGET h k; INCRBY h x; TYPE h"),
    );
    t.same(
        "wrong types, hash commands",
        r("HSET k f v; HGET k f; HLEN k; HDEL k f"),
    );
    t.same(
        "HDEL down to nothing",
        r("HDEL h f nope; HDEL h g; EXISTS h"),
    );
    t.same("SET replaces a hash", r("HSET h2 f v; SET h2 s; TYPE h2"));
    // What a client sent, quoted back as one line, and briefly.
    let injected = "\"x\\r\\n$6\\r\\nforged\\r\\n+X\"";
    t.same(
        "inline HSET of a forged reply, GET",
        format!("HSET inj f {injected}\r\nGET victim\r\n"),
    )
    .check = Some(|reply| assert_eq!(reply, b":1\r\n$-1\r\n"));
    t.same(
        "an unknown command quoting it, GET",
        format!("HSETX inj f {injected}\r\nGET victim\r\n"),
    )
    .check = Some(|reply| assert_eq!(reply.split(|&b| b == b'\n').count(), 3, "{}", show(reply)));
    t.same(
        "RESP: CR LF in an unknown command's arguments",
        [cmd(&["NOPE", "a\r\n+OK\r\n", "b\nc"]), r("GET victim")].concat(),
    );
    t.same(
        "an unknown command, NUL and control bytes",
        cmd(&[&b"nope"[..], b"a\0b", b"c\x01\td\x1b[31m"]),
    );
    t.same("an unknown command with no arguments", r("frobnicate"));
    let mut long = vec!["FROB".to_string()];
    long.extend((0..256).map(|i| format!("{i:03}{}", "x".repeat(297))));
    t.same("an unknown command, 256 arguments of 300 bytes", cmd(&long))
        .check = Some(|reply| assert!(reply.len() < 200, "{} bytes: {}", reply.len(), show(reply)));
    t.same(
        "an unknown command, a 1000-byte name",
        cmd(&["N".repeat(1000), "a".to_string()]),
    )
    .check = Some(|reply| assert!(reply.len() < 200, "{} bytes", reply.len()));
    t.same("an unknown command like a known one", r("GeT2 x"));
    // Malformed requests: Redis's words, then the connection closes.
    t.same("bad multibulk length", "*abc\r\n");
    t.same("negative bulk length", "*1\r\n$-1\r\n");
    t.same("not a bulk string", "*1\r\n+x\r\n");
    t.same("bad bulk length", "*1\r\n$x\r\n");
    t.same("empty bulk header", "*1\r\n\r\n");
    t.same("leading zeros", "*01\r\n$4\r\nPING\r\n");
    t.same("*0 and *-1 are skipped", "*0\r\n*-1\r\nPING\r\n");
    t.same(
        "two bytes after bulk data skipped",
        "*1\r\n$4\r\npingXYping\r\n",
    );
    t.same(
        "the replies so far, then the error",
        [r("SET q 1"), b"*1\r\n$y\r\n".to_vec()].concat(),
    );
    // HTTP: closed without a reply, nothing after it run.
    t.same(
        "GET / HTTP/1.1 with Host:",
        "GET / HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    );
    t.same(
        "POST",
        "POST /data HTTP/1.1\r\nHost: localhost\r\n\r\nSET x evil\r\n",
    );
    t.same("PING then POST: no PONG", "PING\r\nPOST / HTTP/1.0\r\n\r\n");
    t.same("Host: alone", "Host: 127.0.0.1\r\nSET x evil\r\n");
    t.same("nothing of those ran", r("GET x"));
    // Pub/sub on one connection.
    t.same("SUBSCRIBE (arity)", r("SUBSCRIBE"));
    t.same(
        "UNSUBSCRIBE, PUNSUBSCRIBE: nothing subscribed",
        r("UNSUBSCRIBE; PUNSUBSCRIBE"),
    );
    t.same("PUBLISH to nobody", r("PUBLISH nobody x"));
    t.same("PUBLISH (arity)", r("PUBLISH c"));
    let refused =
        "SUBSCRIBE a; GET x; PING; PING hi; nosuch; GET; AUTH x; PUBLISH a m; UNSUBSCRIBE";
    t.same(
        "subscribed: pub/sub, PING, QUIT, RESET only",
        r(&format!("{refused}; PING")),
    );
    let twice = "SUBSCRIBE a a; PSUBSCRIBE a* a* b?; UNSUBSCRIBE zz; PUNSUBSCRIBE b? nope";
    t.same(
        "SUBSCRIBE twice, PSUBSCRIBE, RESET",
        r(&format!("{twice}; PUNSUBSCRIBE; RESET; GET k2")),
    );
    t.same("QUIT when subscribed", r("SUBSCRIBE a; QUIT; PING"));
    t.same("RESET, RESET (arity)", r("RESET; RESET x"));
    // Where the two differ.
    t.0.push(Case {
        what: "LPUSH",
        request: r("LPUSH list x"),
        differs: Some((
            "kv_server has no lists",
            b":1\r\n",
            b"-ERR unknown command 'LPUSH', with args beginning with: 'list' 'x' \r\n",
        )),
        check: None,
    });
    t.0.push(Case {
        what: "a 2 MiB value announced, then the end of file",
        request: b"*3\r\n$3\r\nSET\r\n$4\r\nhuge\r\n$2097152\r\n".to_vec(),
        differs: Some((
            "kv_server takes bulk strings up to 1 MiB (Redis: 512 MB), so that no client \
             grows it much; redis-server waits for the 2 MiB, then closes at the end of file",
            b"",
            b"-ERR Protocol error: invalid bulk length\r\n",
        )),
        check: None,
    });
    t.0
}

both_modes!(replies_match_redis_server_byte_for_byte);
/// Every request of the table, sent to redis-server and to kv_server:
/// the same bytes back, or the difference the table states.
fn replies_match_redis_server_byte_for_byte(park: bool) {
    let Some(redis) = start_redis_server() else {
        return;
    };
    let kv = start(park);
    let cases = table();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        let from_redis = exchange(redis.port, &case.request);
        let from_kv = exchange(kv.port, &case.request);
        let expected = match case.differs {
            None => from_redis.clone(),
            Some((why, redis_reply, kv_reply)) => {
                assert_eq!(
                    from_redis, redis_reply,
                    "{}: redis-server, {why}",
                    case.what
                );
                kv_reply.to_vec()
            }
        };
        if from_kv != expected {
            wrong.push(format!(
                "{}\n  request:      {}\n  redis-server: {}\n  kv_server:    {}",
                case.what,
                show(&case.request),
                show(&from_redis),
                show(&from_kv)
            ));
        }
        if let Some(check) = case.check {
            check(&from_kv);
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} replies differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// Two subscribers and a publisher, each connection's replies and pushed
/// messages in order, as one transcript per connection.
fn pubsub_transcripts(port: u16) -> Vec<(&'static str, Vec<u8>)> {
    let (mut s1, mut s2, mut publisher) = (
        Peer::connect(port),
        Peer::connect(port),
        Peer::connect(port),
    );
    s1.send(&cmd(&["SUBSCRIBE", "news", "weather"]));
    s1.frames(2);
    s2.send(&r("SUBSCRIBE news; PSUBSCRIBE n* w?ather"));
    s2.frames(3);
    // news: s1 and s2 by the channel, s2 by n*; weather: s1, and s2 by
    // w?ather; nowhere: s2 by n*; other: nobody.
    let sent = [
        ("news", "hello", 1, 2),
        ("weather", "sunny", 1, 1),
        ("nowhere", "x", 0, 1),
        ("other", "y", 0, 0),
    ];
    for (channel, message, to_s1, to_s2) in sent {
        publisher.call(&["PUBLISH", channel, message]);
        s1.frames(to_s1);
        s2.frames(to_s2);
    }
    // Pipelined, large and small: each subscriber's messages in order.
    let mut pipelined = Vec::new();
    let (mut to_s1, mut to_s2) = (0, 0);
    for i in 0..40 {
        let (channel, s2_gets) = if i % 3 == 0 {
            ("weather", 1)
        } else {
            ("news", 2)
        };
        let message = match i % 7 {
            0 => format!("{i}:{}", "w".repeat(40_000)),
            _ => format!("{i}"),
        };
        pipelined.extend(cmd(&["PUBLISH", channel, &message]));
        to_s1 += 1;
        to_s2 += s2_gets;
    }
    publisher.send(&pipelined);
    publisher.frames(40);
    s1.frames(to_s1);
    s2.frames(to_s2);
    // What a subscriber may and may not send.
    s2.send(&r("PING; PING hi; GET x; SET a b; nosuch; SUBSCRIBE"));
    s2.frames(6);
    // No message of a channel after its unsubscribe confirmation.
    s1.call(&["UNSUBSCRIBE", "news"]);
    publisher.call(&["PUBLISH", "news", "again"]);
    s2.frames(2);
    s1.call(&["PING"]);
    // Unsubscribe from all; patterns in the order subscribed.
    s2.call(&["UNSUBSCRIBE"]);
    s2.send(&cmd(&["PUNSUBSCRIBE"]));
    s2.frames(2);
    s2.call(&["GET", "x"]);
    publisher.call(&["PUBLISH", "news", "last"]);
    s1.call(&["UNSUBSCRIBE"]);
    s1.call(&["PING"]);
    // Large and binary messages, whole.
    s1.call(&["SUBSCRIBE", "bin\0ary"]);
    let big = format!("{}\r\n\0end", "m".repeat(100_000));
    publisher.call(&["PUBLISH", "bin\0ary", &big]);
    s1.frames(1);
    s1.call(&["PING"]);
    vec![
        ("s1", s1.seen),
        ("s2", s2.seen),
        ("publisher", publisher.seen),
    ]
}

both_modes!(pubsub_frames_and_counts_match_redis_server);
/// The pub/sub transcripts of redis-server and kv_server are the same
/// bytes: confirmations, counts, `message` and `pmessage` frames, PING in
/// subscribed mode, the refusals.
fn pubsub_frames_and_counts_match_redis_server(park: bool) {
    let Some(redis) = start_redis_server() else {
        return;
    };
    let kv = start(park);
    let expected = pubsub_transcripts(redis.port);
    let got = pubsub_transcripts(kv.port);
    for ((who, want), (_, got)) in expected.iter().zip(&got) {
        assert!(
            want == got,
            "{who}:\n  redis-server: {}\n  kv_server:    {}",
            show(want),
            show(got)
        );
    }
}

/// Patterns of every kind `stringmatchlen` knows, and its edge cases.
const PATTERNS: &[&[u8]] = &[
    b"*",
    b"?",
    b"h?llo",
    b"h*llo",
    b"h[ae]llo",
    b"h[^e]llo",
    b"h[a-b]llo",
    b"h[b-a]llo",
    b"h\\*llo",
    b"\\",
    b"a\\",
    b"[",
    b"[a",
    b"[^]",
    b"[]]",
    b"[a-]",
    b"[-a]",
    b"*[",
    b"**a",
    b"a*b*c",
    b"x[\\]]y",
    b"[\\",
    b"h[",
    b"*o",
    b"o*",
    b"*?",
    b"?*?",
    b"[[]",
    b"[^a-z]*",
    b"\\?",
    b"\\[a]",
    b"[a-c-e]",
    b"[z-a]x",
    b"[a-\xff]",
    b"\xff*",
    b"*a*a*a*a*a*b",
    b"[^]]*",
    b"a[b",
    b"*\\",
    b"[\\^a]",
];

const CHANNELS: &[&[u8]] = &[
    b"hello",
    b"hallo",
    b"hxllo",
    b"hllo",
    b"heeello",
    b"h*llo",
    b"a",
    b"",
    b"abc",
    b"ab",
    b"]",
    b"[",
    b"\\",
    b"x]y",
    b"a-",
    b"-",
    b"abcabc",
    b"\xff",
    b"\x80",
    b"b",
    b"0",
    b"zz",
    b"a*b*c",
    b"aaaaaaaaaaab",
    b"aaaaaaaaaaaa",
    b"?",
    b"^",
    b"d",
    b"hello world",
    b"a[b",
    b"a\\",
    b"[a]",
    b"o",
    b"xo",
    b"ox",
];

/// One subscriber to every pattern; for each channel, the count PUBLISH
/// gives and the `pmessage` frames received, in an order of their own
/// (Redis sends them in its hash table's order).
fn glob_transcript(port: u16) -> Vec<u8> {
    let (patterns, channels) = glob_cases();
    let (mut subscriber, mut publisher) = (Peer::connect(port), Peer::connect(port));
    let mut args: Vec<&[u8]> = vec![b"PSUBSCRIBE"];
    args.extend(patterns.iter().map(Vec::as_slice));
    subscriber.send(&cmd(&args));
    subscriber.frames(patterns.len());
    let mut transcript = Vec::new();
    for channel in &channels {
        publisher.send(&cmd(&[&b"PUBLISH"[..], channel, b"m"]));
        let count = publisher.frame();
        let n: usize = std::str::from_utf8(&count[1..count.len() - 2])
            .unwrap()
            .parse()
            .unwrap();
        let mut frames: Vec<Vec<u8>> = (0..n).map(|_| subscriber.frame()).collect();
        frames.sort();
        transcript.extend_from_slice(&count);
        transcript.extend(frames.concat());
    }
    transcript
}

/// [`PATTERNS`] and [`CHANNELS`], and as many again made at random (the
/// same each run) from the bytes that mean something to a pattern.
fn glob_cases() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |below: usize| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) as usize % below
    };
    let mut random = |alphabet: &[u8], longest: usize| -> Vec<u8> {
        let len = next(longest + 1);
        (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
    };
    let mut patterns: Vec<Vec<u8>> = PATTERNS.iter().map(|p| p.to_vec()).collect();
    let mut channels: Vec<Vec<u8>> = CHANNELS.iter().map(|c| c.to_vec()).collect();
    for _ in 0..200 {
        let pattern = random(b"ab*?[]^-\\\xff", 8);
        if !pattern.is_empty() && !patterns.contains(&pattern) {
            patterns.push(pattern);
        }
        channels.push(random(b"ab[]^-\\*?\xff", 6));
    }
    (patterns, channels)
}

both_modes!(glob_patterns_match_as_in_redis_server);
fn glob_patterns_match_as_in_redis_server(park: bool) {
    let Some(redis) = start_redis_server() else {
        return;
    };
    let kv = start(park);
    let want = glob_transcript(redis.port);
    let matched = want.windows(8).filter(|w| w == b"pmessage").count();
    assert!(matched > 500, "only {matched} matches: too few to tell");
    let got = glob_transcript(kv.port);
    assert!(
        want == got,
        "\n  redis-server: {}\n  kv_server:    {}",
        show(&want),
        show(&got)
    );
}

/// Sets keys with deadlines of a few milliseconds and polls (for at most
/// `TIMEOUT`) until each is gone; returns what was read before and after.
fn expiry_transcript(port: u16) -> Vec<u8> {
    let mut c = Peer::connect(port);
    let gone = |c: &mut Peer, probe: &[&str], absent: &[u8]| {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            c.send(&cmd(probe));
            if read_frame(&mut c.reader) == absent {
                break;
            }
            assert!(Instant::now() < deadline, "{probe:?} still there");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    // Each deadline set in one write with the reads that must still find
    // the key, so that a slow machine cannot make them late.
    c.send(&r("SET e v PX 50; GET e"));
    c.frames(2);
    gone(&mut c, &["GET", "e"], b"$-1\r\n");
    c.send(&r("EXISTS e; TTL e"));
    c.frames(2);
    // INCR keeps the deadline. The milliseconds left differ from run to
    // run: checked, not compared.
    c.send(&r("SET n 10 PX 200; INCR n"));
    c.frames(2);
    c.send(&r("PTTL n"));
    let pttl = read_frame(&mut c.reader);
    let ms: i64 = std::str::from_utf8(&pttl[1..pttl.len() - 2])
        .unwrap()
        .parse()
        .unwrap();
    assert!((-2..=200).contains(&ms), "PTTL {ms}");
    gone(&mut c, &["GET", "n"], b"$-1\r\n");
    c.call(&["INCR", "n"]);
    // PEXPIRE on a string and on a hash.
    c.send(&r("SET p v; PEXPIRE p 40; EXISTS p"));
    c.frames(3);
    gone(&mut c, &["EXISTS", "p"], b":0\r\n");
    c.send(&r("HSET h f v; PEXPIRE h 40; HLEN h"));
    c.frames(3);
    gone(&mut c, &["HLEN", "h"], b":0\r\n");
    c.call(&["TYPE", "h"]);
    // MSET and SET take a deadline away.
    c.send(&r(
        "SET m v PX 100000; MSET m w; PTTL m; SET m2 v PX 100000; SET m2 w; PTTL m2",
    ));
    c.frames(6);
    c.seen
}

both_modes!(keys_expire_as_in_redis_server);
fn keys_expire_as_in_redis_server(park: bool) {
    let Some(redis) = start_redis_server() else {
        return;
    };
    let kv = start(park);
    let want = expiry_transcript(redis.port);
    let got = expiry_transcript(kv.port);
    assert!(
        want == got,
        "\n  redis-server: {}\n  kv_server:    {}",
        show(&want),
        show(&got)
    );
}

fn cli(redis_cli: &Path, port: u16, args: &[&str]) -> String {
    // coreutils' `timeout` ends a client that would hang on a server that
    // does not answer (redis-cli 7.0 has no timeout option of its own).
    let out = Command::new("timeout")
        .arg("10")
        .arg(redis_cli)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

both_modes!(redis_cli_speaks_to_kv_server);
fn redis_cli_speaks_to_kv_server(park: bool) {
    let Some(redis_cli) = outside_program("redis-cli", "redis-tools") else {
        return;
    };
    let server = start(park);
    let p = server.port;
    assert_eq!(cli(&redis_cli, p, &["ping"]), "PONG");
    assert_eq!(cli(&redis_cli, p, &["echo", "hi there"]), "hi there");
    assert_eq!(cli(&redis_cli, p, &["set", "greeting", "hello"]), "OK");
    assert_eq!(cli(&redis_cli, p, &["get", "greeting"]), "hello");
    assert_eq!(cli(&redis_cli, p, &["exists", "greeting", "nope"]), "1");
    assert_eq!(cli(&redis_cli, p, &["incr", "n"]), "1");
    assert_eq!(cli(&redis_cli, p, &["incrby", "n", "41"]), "42");
    assert_eq!(cli(&redis_cli, p, &["set", "t", "v", "ex", "60"]), "OK");
    assert_eq!(cli(&redis_cli, p, &["ttl", "t"]), "60");
    assert_eq!(
        cli(&redis_cli, p, &["incr", "greeting"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cli(&redis_cli, p, &["del", "greeting", "n", "nope"]), "2");
    assert_eq!(cli(&redis_cli, p, &["get", "greeting"]), "");
    assert_eq!(
        cli(&redis_cli, p, &["frobnicate", "a", "b"]),
        "ERR unknown command 'frobnicate', with args beginning with: 'a' 'b'"
    );
}

/// `redis-cli subscribe news` as a child process, `redis-cli publish` to
/// it, and each line the subscriber printed.
fn redis_cli_pubsub(redis_cli: &Path, port: u16) -> Vec<String> {
    let port = port.to_string();
    let child = Command::new("timeout")
        .args(["10".as_ref(), redis_cli.as_os_str()])
        .args(["-p", &port, "subscribe", "news", "sport"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut subscriber = KillOnDrop(child);
    let stdout = subscriber.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let take = |printed: &mut Vec<String>, n: usize| {
        for _ in 0..n {
            printed.push(
                lines
                    .recv_timeout(TIMEOUT)
                    .expect("a line from redis-cli subscribe"),
            );
        }
    };
    let mut printed = Vec::new();
    // Subscribed to both once their confirmations are printed.
    take(&mut printed, 6);
    for (channel, message) in [
        ("news", "hello there"),
        ("sport", "1:0"),
        ("weather", "rain"),
    ] {
        let receivers = cli(
            redis_cli,
            port.parse().unwrap(),
            &["publish", channel, message],
        );
        printed.push(format!("publish {channel}: {receivers}"));
        take(&mut printed, if receivers == "0" { 0 } else { 3 });
    }
    printed
}

both_modes!(redis_cli_subscribes_and_publishes_as_with_redis_server);
fn redis_cli_subscribes_and_publishes_as_with_redis_server(park: bool) {
    let Some(redis_cli) = outside_program("redis-cli", "redis-tools") else {
        return;
    };
    let Some(redis) = start_redis_server() else {
        return;
    };
    let kv = start(park);
    let want = redis_cli_pubsub(&redis_cli, redis.port);
    assert_eq!(
        want,
        [
            "subscribe",
            "news",
            "1",
            "subscribe",
            "sport",
            "2",
            "publish news: 1",
            "message",
            "news",
            "hello there",
            "publish sport: 1",
            "message",
            "sport",
            "1:0",
            "publish weather: 0"
        ]
    );
    assert_eq!(redis_cli_pubsub(&redis_cli, kv.port), want);
}

/// A redis-py session: strings, counters, options of SET, errors, and
/// pub/sub with `get_message`; the results printed as JSON. argv: the
/// port, and the protocol (`2`, or `default`: the library's choice, RESP3
/// for redis-py 6 and later, which falls back to RESP2 where `HELLO` is
/// unknown).
const REDIS_PY_SESSION: &str = r#"
import json, sys, time
import redis

port, protocol = int(sys.argv[1]), sys.argv[2]
options = dict(host="127.0.0.1", port=port, socket_timeout=5)
try:
    if protocol == "default":
        r = redis.Redis(**options)
    else:
        r = redis.Redis(protocol=int(protocol), **options)
except TypeError:  # redis-py before 5: RESP2 only, and no such argument
    r = redis.Redis(**options)

def plain(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "backslashreplace")
    if isinstance(v, dict):
        return {plain(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v

def outcome(f):
    try:
        return ["ok", plain(f())]
    except redis.RedisError as e:
        return ["error", type(e).__name__, str(e)]

out = {}
# Every run starts from the same keyspace.
r.delete("py:k", "py:missing", "py:n", "py:e", "py:fresh", "py:none", "py:none2")
r.delete("py:px", "py:a", "py:b", "py:c")
out["set"] = r.set("py:k", "v")
out["get"] = r.get("py:k")
out["get_missing"] = r.get("py:missing")
out["incr"] = [r.incr("py:n"), r.incr("py:n", 5), r.decr("py:n"), r.decr("py:n", 10)]
out["incr_not_integer"] = outcome(lambda: r.incr("py:k"))
out["set_ex"] = [r.set("py:e", "1", ex=100), r.ttl("py:e")]
out["set_nx"] = [r.set("py:k", "w", nx=True), r.set("py:fresh", "w", nx=True)]
out["set_xx"] = [r.set("py:k", "x", xx=True), r.set("py:none", "x", xx=True)]
out["set_get"] = [r.set("py:k", "v2", get=True), r.set("py:none2", "v", get=True)]
out["set_px"] = r.set("py:px", "1", px=1)
out["mset_mget"] = [r.mset({"py:a": "1", "py:b": "2"}), r.mget("py:a", "py:b", "py:c")]
out["unknown"] = outcome(lambda: r.execute_command("NOSUCH", "a\r\nb"))

p = r.pubsub()
p.subscribe("py:chan")
p.psubscribe("py:p*")
messages = [p.get_message(timeout=5), p.get_message(timeout=5)]
out["publish"] = [r.publish("py:chan", "hi"), r.publish("py:pat", "there")]
out["publish"].append(r.publish("py:none", "x"))
messages += [p.get_message(timeout=5), p.get_message(timeout=5)]
p.unsubscribe("py:chan")
p.punsubscribe("py:p*")
messages += [p.get_message(timeout=5), p.get_message(timeout=5)]
out["messages"] = messages
out["publish_after"] = r.publish("py:chan", "late")
p.close()

deadline = time.monotonic() + 5
while r.get("py:px") is not None and time.monotonic() < deadline:
    time.sleep(0.002)
out["px_expired"] = r.get("py:px")
print(json.dumps(plain(out), sort_keys=True))
"#;

fn redis_py(python: &Path, port: u16, protocol: &str) -> String {
    let out = Command::new("timeout")
        .args(["20".as_ref(), python.as_os_str()])
        .args(["-c", REDIS_PY_SESSION, &port.to_string(), protocol])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "redis-py on port {port}, protocol {protocol}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

both_modes!(redis_py_gets_the_same_answers_from_both);
/// redis-py, in RESP2 and in its default protocol, gets the same results
/// from kv_server as from redis-server.
fn redis_py_gets_the_same_answers_from_both(park: bool) {
    let Some(python) = outside_program("python3", "python3") else {
        return;
    };
    let has_redis_py = Command::new(&python)
        .args(["-c", "import redis"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_redis_py {
        let why = "Python's redis package is not installed \
                   (pip install redis, or apt-get install python3-redis)";
        assert!(std::env::var_os(REQUIRE_ALL).is_none(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let Some(redis) = start_redis_server() else {
        return;
    };
    let kv = start(park);
    let want = redis_py(&python, redis.port, "2");
    assert!(want.contains(r#""publish": [1, 1, 0]"#), "{want}");
    for (port, protocol) in [
        (redis.port, "default"),
        (kv.port, "2"),
        (kv.port, "default"),
    ] {
        let got = redis_py(&python, port, protocol);
        assert_eq!(got, want, "port {port}, protocol {protocol}");
    }
}

both_modes!(a_subscriber_cut_or_gone_is_removed);
/// A subscriber that stops reading is cut once `--max-outbox` bytes wait
/// for it, and no longer counted; one that disconnects is no longer
/// counted either; the server goes on serving.
fn a_subscriber_cut_or_gone_is_removed(park: bool) {
    let kv = start_with(park, &["--max-outbox", "65536"]);
    let mut publisher = Peer::connect(kv.port);
    let mut slow = Peer::connect(kv.port);
    slow.call(&["SUBSCRIBE", "firehose"]);
    let mut gone = Peer::connect(kv.port);
    gone.call(&["SUBSCRIBE", "firehose"]);
    drop(gone);
    // The one gone is noticed when its handler reads the end of file.
    let deadline = Instant::now() + TIMEOUT;
    while publisher.call(&["PUBLISH", "firehose", "x"]) != b":1\r\n" {
        assert!(
            Instant::now() < deadline,
            "the closed subscriber still counted"
        );
    }
    // The slow one never reads: the socket buffers fill (megabytes on
    // loopback), then its outbox.
    let message = "m".repeat(16 * 1024);
    let mut published = 0;
    while publisher.call(&["PUBLISH", "firehose", &message]) != b":0\r\n" {
        published += 1;
        assert!(
            published < 8192,
            "not cut after {published} messages of 16 KiB"
        );
    }
    assert!(
        published > 4,
        "cut after only {published} messages of 16 KiB"
    );
    // It was cut: what reached it ends, and soon.
    slow.reader
        .get_mut()
        .set_read_timeout(Some(TIMEOUT))
        .unwrap();
    let mut sink = vec![0; 1 << 16];
    loop {
        match slow.reader.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the cut subscriber's connection did not end: {e}"),
        }
    }
    assert_eq!(publisher.call(&["PUBLISH", "firehose", "x"]), b":0\r\n");
    assert_eq!(publisher.call(&["PING"]), b"+PONG\r\n");
}

both_modes!(redis_benchmark_with_200_clients_sees_no_error);
fn redis_benchmark_with_200_clients_sees_no_error(park: bool) {
    let Some(bench) = outside_program("redis-benchmark", "redis-tools") else {
        return;
    };
    let server = start(park);
    let out = Command::new("timeout")
        .arg("120")
        .arg(bench)
        .args(["-p", &server.port.to_string()])
        .args(["-t", "ping,set,get", "-c", "200", "-n", "20000", "--csv"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("rror") && !text.contains("rror"),
        "{stderr}{text}"
    );
    // One CSV line per test, each with a rate.
    for test in ["PING_INLINE", "PING_MBULK", "SET", "GET"] {
        assert!(
            text.contains(&format!("\"{test}\",")),
            "{test} missing from {text}"
        );
    }
}

/// This process's resident memory, from `/proc`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

both_modes!(an_endless_inline_line_is_refused_without_growing_the_server);
fn an_endless_inline_line_is_refused_without_growing_the_server(park: bool) {
    let server = start(park);
    let before = rss_kib(server.child.id());
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    // Up to 64 MiB of one line, with no newline; the server stops reading
    // after 64 KiB, so the writes soon fail.
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..64 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("-ERR Protocol error: too big inline request"),
        "{reply:?}"
    );
    let after = rss_kib(server.child.id());
    assert!(
        after < before + 8 * 1024,
        "grew from {before} KiB to {after} KiB"
    );
}
