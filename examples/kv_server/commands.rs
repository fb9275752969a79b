//! The command table, and the checks Redis 7.0's `processCommand` makes
//! before running one, in its order: a connection that sends `POST` or
//! `Host:` (a browser or an HTTP client made to reach Redis, as in
//! cross-protocol attacks) is closed with nothing run; then an unknown
//! command, a wrong number of arguments, and a command a subscribed
//! client may not send, each with Redis's error words.

use crate::pubsub::Change;
use crate::resp::{self, c_str};
use crate::{hashes, keys, strings, Shared};

/// What the connection does after a command.
pub enum Flow {
    /// Reads the next request.
    Next,
    /// Writes the replies so far, then closes (`QUIT`).
    Quit,
    /// Closes at once, the replies not yet written dropped (an HTTP
    /// request, as Redis's `securityWarningCommand`).
    Refuse,
    /// Drops the subscriptions, then replies `+RESET`.
    Reset,
    /// A subscription change, which needs the connection itself.
    PubSub(Change),
    /// `PUBLISH`, which the connection's batch of pushes takes.
    Publish,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Ping,
    Echo,
    Quit,
    Reset,
    Auth,
    Get,
    Set,
    MGet,
    MSet,
    Incr,
    Decr,
    IncrBy,
    DecrBy,
    Del,
    Exists,
    Type,
    Expire,
    PExpire,
    Ttl,
    PTtl,
    Persist,
    HSet,
    HGet,
    HDel,
    HLen,
    Publish,
    PubSub(Change),
}

/// Redis's name, arity (the count with the name; negative: at least that
/// many), and the command.
const COMMANDS: &[(&str, i32, Cmd)] = &[
    ("get", 2, Cmd::Get),
    ("set", -3, Cmd::Set),
    ("ping", -1, Cmd::Ping),
    ("incr", 2, Cmd::Incr),
    ("decr", 2, Cmd::Decr),
    ("incrby", 3, Cmd::IncrBy),
    ("decrby", 3, Cmd::DecrBy),
    ("mget", -2, Cmd::MGet),
    ("mset", -3, Cmd::MSet),
    ("del", -2, Cmd::Del),
    ("exists", -2, Cmd::Exists),
    ("type", 2, Cmd::Type),
    ("expire", -3, Cmd::Expire),
    ("pexpire", -3, Cmd::PExpire),
    ("ttl", 2, Cmd::Ttl),
    ("pttl", 2, Cmd::PTtl),
    ("persist", 2, Cmd::Persist),
    ("hset", -4, Cmd::HSet),
    ("hget", 3, Cmd::HGet),
    ("hdel", -3, Cmd::HDel),
    ("hlen", 2, Cmd::HLen),
    ("echo", 2, Cmd::Echo),
    ("publish", 3, Cmd::Publish),
    ("subscribe", -2, Cmd::PubSub(Change::Subscribe)),
    ("unsubscribe", -1, Cmd::PubSub(Change::Unsubscribe)),
    ("psubscribe", -2, Cmd::PubSub(Change::PSubscribe)),
    ("punsubscribe", -1, Cmd::PubSub(Change::PUnsubscribe)),
    ("auth", -2, Cmd::Auth),
    ("quit", -1, Cmd::Quit),
    ("reset", 1, Cmd::Reset),
];

/// Checks and runs one request, appending its reply to `out`.
/// `subscribed`: the client is in pub/sub mode.
pub fn dispatch(args: &[Vec<u8>], subscribed: bool, shared: &Shared, out: &mut Vec<u8>) -> Flow {
    let Some(name) = args.first() else {
        return Flow::Next; // An empty request: Redis ignores it.
    };
    let bare = c_str(name);
    if bare.eq_ignore_ascii_case(b"host:") || bare.eq_ignore_ascii_case(b"post") {
        return Flow::Refuse;
    }
    let Some(&(name, arity, cmd)) = COMMANDS
        .iter()
        .find(|(known, _, _)| known.as_bytes().eq_ignore_ascii_case(name))
    else {
        unknown_command(args, out);
        return Flow::Next;
    };
    let argc = args.len() as i32; // At most the reader's 1,024.
    if (arity > 0 && argc != arity) || argc < -arity || (cmd == Cmd::Ping && argc > 2) {
        resp::error(
            out,
            &format!("wrong number of arguments for '{name}' command"),
        );
        return Flow::Next;
    }
    let allowed = matches!(cmd, Cmd::PubSub(_) | Cmd::Ping | Cmd::Quit | Cmd::Reset);
    if subscribed && !allowed {
        let msg = format!(
            "Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
             RESET are allowed in this context"
        );
        resp::error(out, &msg);
        return Flow::Next;
    }
    run(cmd, args, subscribed, shared, out)
}

/// Redis's reply to an unknown command: its name and the start of its
/// arguments, each cut at a NUL (C strings) and at 128 bytes, 128 bytes
/// of arguments at most in all, CRs and LFs made spaces. So the reply
/// stays one line of the protocol, and small, whatever was sent.
fn unknown_command(args: &[Vec<u8>], out: &mut Vec<u8>) {
    let mut listed = Vec::new();
    for arg in &args[1..] {
        if listed.len() >= 128 {
            break;
        }
        let arg = c_str(arg);
        let room = 128 - listed.len();
        listed.push(b'\'');
        listed.extend_from_slice(&arg[..arg.len().min(room)]);
        listed.extend_from_slice(b"' ");
    }
    let name = c_str(&args[0]);
    let msg = [
        b"unknown command '",
        &name[..name.len().min(128)],
        b"', with args beginning with: ",
        &listed,
    ]
    .concat();
    resp::error_safe(out, &msg);
}

fn run(cmd: Cmd, args: &[Vec<u8>], subscribed: bool, shared: &Shared, out: &mut Vec<u8>) -> Flow {
    match cmd {
        // In pub/sub mode a RESP2 client gets PING's answer as an array,
        // so that it can tell it from a pushed message.
        Cmd::Ping if subscribed => {
            resp::array(out, 2);
            resp::bulk(out, b"pong");
            resp::bulk(out, args.get(1).map_or(&[][..], Vec::as_slice));
        }
        Cmd::Ping => match args.get(1) {
            Some(msg) => resp::bulk(out, msg),
            None => out.extend_from_slice(b"+PONG\r\n"),
        },
        Cmd::Echo => resp::bulk(out, &args[1]),
        Cmd::Quit => {
            resp::ok(out);
            return Flow::Quit;
        }
        Cmd::Reset => return Flow::Reset,
        Cmd::Auth => auth(args, out),
        Cmd::Publish => return Flow::Publish,
        Cmd::PubSub(change) => return Flow::PubSub(change),
        _ => run_on_keys(cmd, args, shared, out),
    }
    Flow::Next
}

/// The commands on the keyspace: its lock held for the lookup or change
/// and the copy of the reply into `out`, never across the client's I/O.
fn run_on_keys(cmd: Cmd, args: &[Vec<u8>], shared: &Shared, out: &mut Vec<u8>) {
    let mut db = shared.store.lock();
    let key = &args[1];
    match cmd {
        Cmd::Get => strings::get(&db, key, out),
        Cmd::Set => strings::set(&mut db, args, out),
        Cmd::MGet => strings::mget(&db, &args[1..], out),
        Cmd::MSet => strings::mset(&mut db, args, out),
        Cmd::Incr => strings::incr_by(&mut db, key, 1, out),
        Cmd::Decr => strings::incr_by(&mut db, key, -1, out),
        Cmd::IncrBy => strings::incr_by_arg(&mut db, key, &args[2], false, out),
        Cmd::DecrBy => strings::incr_by_arg(&mut db, key, &args[2], true, out),
        Cmd::Del => keys::del(&mut db, &args[1..], out),
        Cmd::Exists => keys::exists(&db, &args[1..], out),
        Cmd::Type => keys::type_of(&db, key, out),
        Cmd::Expire => keys::expire(&mut db, args, false, out),
        Cmd::PExpire => keys::expire(&mut db, args, true, out),
        Cmd::Ttl => keys::ttl(&db, key, false, out),
        Cmd::PTtl => keys::ttl(&db, key, true, out),
        Cmd::Persist => keys::persist(&mut db, key, out),
        Cmd::HSet => hashes::hset(&mut db, args, out),
        Cmd::HGet => hashes::hget(&db, key, &args[2], out),
        Cmd::HDel => hashes::hdel(&mut db, key, &args[2..], out),
        Cmd::HLen => hashes::hlen(&db, key, out),
        _ => unreachable!("not a keyspace command"),
    }
}

/// `AUTH [username] password`, as Redis 7.0 answers with no password set:
/// the default user takes any password; the one-argument form says that
/// no password is configured, without echoing it.
fn auth(args: &[Vec<u8>], out: &mut Vec<u8>) {
    match args.len() {
        2 => resp::error(
            out,
            "AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ),
        3 if args[1] == b"default" => resp::ok(out),
        3 => resp::error(
            out,
            "-WRONGPASS invalid username-password pair or user is disabled.",
        ),
        _ => resp::error(out, "syntax error"),
    }
}
