//! The string commands, with Redis 7.0's options, checks in the same
//! order, and its error words: `GET`, `SET`, `MGET`, `MSET`, and `INCR`,
//! `DECR`, `INCRBY`, `DECRBY`.

use crate::resp::{self, c_str, parse_i64};
use crate::store::{now_ms, Db, Entry, Value};

pub const NOT_AN_INTEGER: &str = "value is not an integer or out of range";
pub const WRONG_TYPE: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value";

/// `GET key`
pub fn get(db: &Db, key: &[u8], out: &mut Vec<u8>) {
    match db.get(key) {
        None => resp::nil(out),
        Some(Entry {
            value: Value::Str(v),
            ..
        }) => resp::bulk(out, v),
        Some(_) => resp::error(out, WRONG_TYPE),
    }
}

/// `MGET key [key ...]`: a key holding another type reads as nil.
pub fn mget(db: &Db, keys: &[Vec<u8>], out: &mut Vec<u8>) {
    resp::array(out, keys.len());
    for key in keys {
        match db.get(key).map(|e| &e.value) {
            Some(Value::Str(v)) => resp::bulk(out, v),
            _ => resp::nil(out),
        }
    }
}

/// `MSET key value [key value ...]`
pub fn mset(db: &mut Db, args: &[Vec<u8>], out: &mut Vec<u8>) {
    if args.len() % 2 == 0 {
        return resp::error(out, "wrong number of arguments for 'mset' command");
    }
    for pair in args[1..].chunks_exact(2) {
        db.set(pair[0].clone(), Value::Str(pair[1].clone()), None);
    }
    resp::ok(out);
}

/// Which expiry option of `SET` was given (each excludes the others).
#[derive(Clone, Copy, PartialEq)]
enum Expiry {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// `SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL]`,
/// parsed as Redis's `parseExtendedStringArgumentsOrReply`: an option may
/// repeat, and one that conflicts with an earlier one is a syntax error.
pub fn set(db: &mut Db, args: &[Vec<u8>], out: &mut Vec<u8>) {
    let (mut nx, mut xx, mut get, mut keep_ttl) = (false, false, false, false);
    let mut expiry: Option<(Expiry, &[u8])> = None;
    let mut j = 3;
    while j < args.len() {
        // Redis compares options as C strings: up to a NUL.
        let opt = c_str(&args[j]);
        let is = |name: &str| opt.eq_ignore_ascii_case(name.as_bytes());
        let next = args.get(j + 1).map(Vec::as_slice);
        let kind = expiry.map(|(kind, _)| kind);
        // An expiry option may repeat itself but not follow another.
        let may_expire = |own: Expiry| !keep_ttl && kind.is_none_or(|k| k == own) && next.is_some();
        let new_expiry = [
            ("ex", Expiry::Ex),
            ("px", Expiry::Px),
            ("exat", Expiry::ExAt),
            ("pxat", Expiry::PxAt),
        ]
        .into_iter()
        .find(|&(name, own)| is(name) && may_expire(own));
        if is("nx") && !xx {
            nx = true;
        } else if is("xx") && !nx {
            xx = true;
        } else if is("get") {
            get = true;
        } else if is("keepttl") && expiry.is_none() {
            keep_ttl = true;
        } else if let (Some((_, own)), Some(next)) = (new_expiry, next) {
            expiry = Some((own, next));
            j += 1;
        } else {
            return resp::error(out, "syntax error");
        }
        j += 1;
    }
    let deadline = match expiry {
        None => None,
        Some((kind, arg)) => match deadline(kind, arg) {
            Ok(at) => Some(at),
            Err(msg) => return resp::error(out, msg),
        },
    };
    let key = &args[1];
    let old = db.get_mut(key);
    if get {
        match old.as_ref().map(|e| &e.value) {
            None => resp::nil(out),
            Some(Value::Str(v)) => resp::bulk(out, v),
            Some(Value::Hash(_)) => return resp::error(out, WRONG_TYPE),
        }
    }
    if (nx && old.is_some()) || (xx && old.is_none()) {
        if !get {
            resp::nil(out);
        }
        return;
    }
    let expires_at = match keep_ttl {
        true => old.and_then(|e| e.expires_at),
        false => deadline,
    };
    db.set(key.clone(), Value::Str(args[2].clone()), expires_at);
    if !get {
        resp::ok(out);
    }
}

/// The deadline an expiry option asks for, in Unix milliseconds, or the
/// error Redis's `getExpireMillisecondsOrReply` gives.
fn deadline(kind: Expiry, arg: &[u8]) -> Result<i64, &'static str> {
    const INVALID: &str = "invalid expire time in 'set' command";
    let n = parse_i64(arg).ok_or(NOT_AN_INTEGER)?;
    let seconds = matches!(kind, Expiry::Ex | Expiry::ExAt);
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return Err(INVALID);
    }
    let mut ms = if seconds { n * 1000 } else { n };
    if matches!(kind, Expiry::Ex | Expiry::Px) {
        // C's signed overflow wraps on the machines Redis runs on; the
        // check below then catches it, as there.
        ms = ms.wrapping_add(now_ms());
    }
    if ms <= 0 {
        return Err(INVALID);
    }
    Ok(ms)
}

/// `INCRBY key n` and `DECRBY key n`: the increment read first.
pub fn incr_by_arg(db: &mut Db, key: &[u8], arg: &[u8], negate: bool, out: &mut Vec<u8>) {
    let Some(n) = parse_i64(arg) else {
        return resp::error(out, NOT_AN_INTEGER);
    };
    match negate {
        true if n == i64::MIN => resp::error(out, "decrement would overflow"),
        true => incr_by(db, key, -n, out),
        false => incr_by(db, key, n, out),
    }
}

/// `INCR`, `DECR`, and the rest of `INCRBY`, `DECRBY`: a missing key counts
/// as 0; the key keeps its deadline.
pub fn incr_by(db: &mut Db, key: &[u8], by: i64, out: &mut Vec<u8>) {
    let entry = db.get_mut(key);
    let old = match entry.as_ref().map(|e| &e.value) {
        None => 0,
        Some(Value::Str(v)) => match parse_i64(v) {
            Some(n) => n,
            None => return resp::error(out, NOT_AN_INTEGER),
        },
        Some(Value::Hash(_)) => return resp::error(out, WRONG_TYPE),
    };
    if (by < 0 && old < 0 && by < i64::MIN - old) || (by > 0 && old > 0 && by > i64::MAX - old) {
        return resp::error(out, "increment or decrement would overflow");
    }
    let new = old + by;
    let text = new.to_string().into_bytes();
    match entry {
        Some(entry) => entry.value = Value::Str(text),
        None => db.set(key.to_vec(), Value::Str(text), None),
    }
    resp::int(out, new);
}
