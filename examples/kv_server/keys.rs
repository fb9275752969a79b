//! The commands on keys of any type, as Redis 7.0 has them: `DEL`,
//! `EXISTS`, `TYPE`, `EXPIRE`, `PEXPIRE`, `PERSIST`, `TTL`, `PTTL`.

use crate::resp::{self, c_str, parse_i64};
use crate::store::{now_ms, Db, Value};
use crate::strings::NOT_AN_INTEGER;

/// `DEL key [key ...]`: how many were there.
pub fn del(db: &mut Db, keys: &[Vec<u8>], out: &mut Vec<u8>) {
    let n = keys.iter().filter(|k| db.remove(k)).count();
    resp::int(out, n as i64);
}

/// `EXISTS key [key ...]`: a key named twice counts twice.
pub fn exists(db: &Db, keys: &[Vec<u8>], out: &mut Vec<u8>) {
    let n = keys.iter().filter(|k| db.get(k).is_some()).count();
    resp::int(out, n as i64);
}

/// `TYPE key`
pub fn type_of(db: &Db, key: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(match db.get(key).map(|e| &e.value) {
        None => b"+none\r\n",
        Some(Value::Str(_)) => b"+string\r\n",
        Some(Value::Hash(_)) => b"+hash\r\n",
    });
}

/// `TTL key` (`ms` false) and `PTTL key`: -2 for no key, -1 for no deadline.
pub fn ttl(db: &Db, key: &[u8], ms: bool, out: &mut Vec<u8>) {
    let n = match db.get(key).map(|e| e.expires_at) {
        None => -2,
        Some(None) => -1,
        Some(Some(at)) => {
            let left = (at - now_ms()).max(0);
            // Seconds rounded to the nearest, as Redis rounds them.
            if ms {
                left
            } else {
                (left + 500) / 1000
            }
        }
    };
    resp::int(out, n);
}

/// `PERSIST key`: 1 if it had a deadline, now taken away.
pub fn persist(db: &mut Db, key: &[u8], out: &mut Vec<u8>) {
    let had = db.get(key).is_some_and(|e| e.expires_at.is_some());
    if had {
        db.set_deadline(key, None);
    }
    resp::int(out, i64::from(had));
}

/// `EXPIRE key seconds [NX | XX | GT | LT]` and `PEXPIRE` (`ms`), checked
/// in Redis's order: the options, the number, its range, then the key. A
/// deadline already past deletes the key.
pub fn expire(db: &mut Db, args: &[Vec<u8>], ms: bool, out: &mut Vec<u8>) {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for arg in &args[3..] {
        let opt = c_str(arg);
        let flag = match opt.to_ascii_lowercase().as_slice() {
            b"nx" => &mut nx,
            b"xx" => &mut xx,
            b"gt" => &mut gt,
            b"lt" => &mut lt,
            _ => return resp::error_quoting(out, &[b"Unsupported option ", opt].concat()),
        };
        *flag = true;
    }
    if nx && (xx || gt || lt) {
        return resp::error(
            out,
            "NX and XX, GT or LT options at the same time are not compatible",
        );
    }
    if gt && lt {
        return resp::error(out, "GT and LT options at the same time are not compatible");
    }
    let Some(mut when) = parse_i64(&args[2]) else {
        return resp::error(out, NOT_AN_INTEGER);
    };
    let invalid = match ms {
        true => "invalid expire time in 'pexpire' command",
        false => "invalid expire time in 'expire' command",
    };
    if !ms {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return resp::error(out, invalid);
        }
        when *= 1000;
    }
    let now = now_ms();
    if when > i64::MAX - now {
        return resp::error(out, invalid);
    }
    when += now;
    let Some(current) = db.get(&args[1]).map(|e| e.expires_at) else {
        return resp::int(out, 0);
    };
    let refused = (nx && current.is_some())
        || (xx && current.is_none())
        || (gt && current.is_none_or(|at| when <= at))
        || (lt && current.is_some_and(|at| when >= at));
    if refused {
        return resp::int(out, 0);
    }
    if when <= now {
        db.remove(&args[1]);
    } else {
        db.set_deadline(&args[1], Some(when));
    }
    resp::int(out, 1);
}
