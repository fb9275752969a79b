//! `kv_server`'s `PUBLISH` to many subscribers at once, in both serving
//! modes: a fan-out this large is written by more than one thread (here
//! always 3 helpers beside the publisher's own, whatever the CPUs), and
//! each subscriber must still get every message whole, once and in the
//! order published, as from redis-server, which a test here runs the same
//! requests against when it is installed (`.ci/run` installs it).

mod common;

use common::kv::*;

/// `kv_server` sharing each large fan-out among 4 threads.
fn start_sharing(park: bool) -> KvServer {
    start_with_env(park, &[], &[("KV_WRITER_THREADS", "3")])
}

/// The reply to `PING` in subscribed mode: nothing pushed is left unread
/// before it.
const PONG: &[u8] = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n";

/// Who listens to what, in the order they subscribe.
const ON_CHANNEL: usize = 120;
const ON_PATTERN: usize = 40;
/// Subscribed to the channel and to the pattern: each of their messages
/// comes twice, as `message` and as `pmessage`.
const ON_BOTH: usize = 20;

/// Each subscriber, in order, with what it subscribed to.
fn subscribers(port: u16) -> Vec<Peer> {
    let mut peers = Vec::new();
    for i in 0..ON_CHANNEL + ON_PATTERN + ON_BOTH {
        let mut peer = Peer::connect(port);
        let pattern_only = (ON_CHANNEL..ON_CHANNEL + ON_PATTERN).contains(&i);
        if !pattern_only {
            peer.call(&["SUBSCRIBE", "news"]);
        }
        if i >= ON_CHANNEL {
            peer.call(&["PSUBSCRIBE", "n*"]);
        }
        peers.push(peer);
    }
    peers
}

/// One publisher's pipelined `PUBLISH`es: to `news` (every subscriber),
/// to `nope` (the pattern's only) and to `other` (nobody), in turn.
fn publishes(count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|i| {
            let channel = ["news", "nope", "other"][i % 3];
            cmd(&["PUBLISH", channel, &format!("message {i} of {count}")])
        })
        .collect()
}

/// What a subscriber reads in all, from its first confirmation on: the
/// publisher's replies and each subscriber's stream.
fn fan_out(port: u16, count: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut peers = subscribers(port);
    let mut publisher = Peer::connect(port);
    publisher.send(&publishes(count));
    publisher.frames(count);
    let (news, nope) = (count.div_ceil(3), (count + 1) / 3);
    for (i, peer) in peers.iter_mut().enumerate() {
        let frames = match i {
            i if i < ON_CHANNEL => news,
            i if i < ON_CHANNEL + ON_PATTERN => news + nope,
            _ => 2 * news + nope,
        };
        peer.frames(frames);
        assert_eq!(
            peer.call(&["PING"]),
            PONG,
            "subscriber {i}: more than its messages"
        );
    }
    let streams = peers.into_iter().map(|p| p.seen).collect();
    (publisher.seen, streams)
}

/// What redis-server 7 sends each: built here, so that the test checks
/// kv_server with or without a redis-server to compare with.
fn expected(count: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
    let message = |channel: &str, text: &str| {
        format!("*3\r\n{}{}{}", bulk("message"), bulk(channel), bulk(text))
    };
    let pmessage = |channel: &str, text: &str| {
        let parts = [bulk("pmessage"), bulk("n*"), bulk(channel), bulk(text)];
        format!("*4\r\n{}", parts.concat())
    };
    let confirm =
        |kind: &str, name: &str, n: usize| format!("*3\r\n{}{}:{n}\r\n", bulk(kind), bulk(name));
    let mut replies = String::new();
    let (mut channel, mut pattern, mut both) = (
        confirm("subscribe", "news", 1),
        confirm("psubscribe", "n*", 1),
        confirm("subscribe", "news", 1) + &confirm("psubscribe", "n*", 2),
    );
    for i in 0..count {
        let text = format!("message {i} of {count}");
        let receivers = match i % 3 {
            0 => {
                channel += &message("news", &text);
                pattern += &pmessage("news", &text);
                both += &(message("news", &text) + &pmessage("news", &text));
                ON_CHANNEL + ON_PATTERN + 2 * ON_BOTH
            }
            1 => {
                pattern += &pmessage("nope", &text);
                both += &pmessage("nope", &text);
                ON_PATTERN + ON_BOTH
            }
            _ => 0,
        };
        replies += &format!(":{receivers}\r\n");
    }
    let streams = (0..ON_CHANNEL + ON_PATTERN + ON_BOTH).map(|i| match i {
        i if i < ON_CHANNEL => channel.clone().into_bytes(),
        i if i < ON_CHANNEL + ON_PATTERN => pattern.clone().into_bytes(),
        _ => both.clone().into_bytes(),
    });
    let streams = streams.map(|s| [s, PONG.to_vec()].concat());
    (replies.into_bytes(), streams.collect())
}

fn assert_same(server: &str, got: &(Vec<u8>, Vec<Vec<u8>>), want: &(Vec<u8>, Vec<Vec<u8>>)) {
    assert!(
        got.0 == want.0,
        "{server}: the publisher's replies {} rather than {}",
        show(&got.0),
        show(&want.0)
    );
    for (i, (got, want)) in got.1.iter().zip(&want.1).enumerate() {
        assert!(
            got == want,
            "{server}: subscriber {i} read {} rather than {}",
            show(got),
            show(want)
        );
    }
}

both_modes!(a_large_fanout_reaches_each_subscriber_as_from_redis_server);
/// 180 subscribers, some to a channel, some to a pattern, some to both,
/// and 600 pipelined `PUBLISH`es: every subscriber reads exactly the
/// bytes redis-server sends it, in order.
fn a_large_fanout_reaches_each_subscriber_as_from_redis_server(park: bool) {
    const COUNT: usize = 600;
    let want = expected(COUNT);
    let kv = start_sharing(park);
    assert_same("kv_server", &fan_out(kv.port, COUNT), &want);
    if let Some(redis) = start_redis_server() {
        // The expectation itself, checked against the reference.
        assert_same("redis-server", &fan_out(redis.port, COUNT), &want);
    }
}

both_modes!(publishers_at_once_keep_each_ones_order);
/// Three publishers pipelining to one channel of 150 subscribers at the
/// same time: each subscriber gets all 1,200 messages, each publisher's
/// in the order it sent them.
fn publishers_at_once_keep_each_ones_order(park: bool) {
    const PUBLISHERS: usize = 3;
    const EACH: usize = 400;
    const SUBSCRIBERS: usize = 150;
    let kv = start_sharing(park);
    let mut peers: Vec<Peer> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut peer = Peer::connect(kv.port);
            peer.call(&["SUBSCRIBE", "c"]);
            peer
        })
        .collect();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let port = kv.port;
            std::thread::spawn(move || {
                let mut publisher = Peer::connect(port);
                // In writes of 20, so that the three interleave.
                for first in (0..EACH).step_by(20) {
                    let batch: Vec<u8> = (first..first + 20)
                        .flat_map(|i| cmd(&["PUBLISH", "c", &format!("{p} {i}")]))
                        .collect();
                    publisher.send(&batch);
                    for _ in 0..20 {
                        assert_eq!(publisher.frame(), format!(":{SUBSCRIBERS}\r\n").as_bytes());
                    }
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().unwrap();
    }
    for (s, peer) in peers.iter_mut().enumerate() {
        let mut next = [0; PUBLISHERS];
        for _ in 0..PUBLISHERS * EACH {
            let frame = peer.frame();
            let text = String::from_utf8(frame).unwrap();
            let body = text.rsplit("\r\n").nth(1).unwrap();
            let (p, i) = body.split_once(' ').unwrap();
            let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(
                i, next[p],
                "subscriber {s}: publisher {p}'s messages out of order"
            );
            next[p] += 1;
        }
        assert_eq!(next, [EACH; PUBLISHERS], "subscriber {s}");
        assert_eq!(
            peer.call(&["PING"]),
            PONG,
            "subscriber {s}: more than its messages"
        );
    }
}
