//! The hash commands `HSET`, `HGET`, `HDEL`, `HLEN`: a second type, so
//! that a command meeting a key of the wrong type answers as Redis does.

use std::collections::HashMap;

use crate::resp;
use crate::store::{Db, Value};
use crate::strings::WRONG_TYPE;

/// `HSET key field value [field value ...]`: how many fields are new.
pub fn hset(db: &mut Db, args: &[Vec<u8>], out: &mut Vec<u8>) {
    if args.len() % 2 == 1 {
        return resp::error(out, "wrong number of arguments for 'hset' command");
    }
    let pairs = args[2..].chunks_exact(2);
    let added = match db.get_mut(&args[1]).map(|e| &mut e.value) {
        Some(Value::Str(_)) => return resp::error(out, WRONG_TYPE),
        Some(Value::Hash(hash)) => pairs
            .filter(|p| hash.insert(p[0].clone(), p[1].clone()).is_none())
            .count(),
        None => {
            let hash: HashMap<_, _> = pairs.map(|p| (p[0].clone(), p[1].clone())).collect();
            let added = hash.len();
            db.set(args[1].clone(), Value::Hash(hash), None);
            added
        }
    };
    resp::int(out, added as i64);
}

/// `HGET key field`
pub fn hget(db: &Db, key: &[u8], field: &[u8], out: &mut Vec<u8>) {
    match db.get(key).map(|e| &e.value) {
        None => resp::nil(out),
        Some(Value::Str(_)) => resp::error(out, WRONG_TYPE),
        Some(Value::Hash(hash)) => match hash.get(field) {
            Some(v) => resp::bulk(out, v),
            None => resp::nil(out),
        },
    }
}

/// `HDEL key field [field ...]`: how many were there; a hash left empty
/// is deleted.
pub fn hdel(db: &mut Db, key: &[u8], fields: &[Vec<u8>], out: &mut Vec<u8>) {
    let (removed, empty) = match db.get_mut(key).map(|e| &mut e.value) {
        None => (0, false),
        Some(Value::Str(_)) => return resp::error(out, WRONG_TYPE),
        Some(Value::Hash(hash)) => {
            let n = fields.iter().filter(|f| hash.remove(*f).is_some()).count();
            (n, hash.is_empty())
        }
    };
    if empty {
        db.remove(key);
    }
    resp::int(out, removed as i64);
}

/// `HLEN key`
pub fn hlen(db: &Db, key: &[u8], out: &mut Vec<u8>) {
    match db.get(key).map(|e| &e.value) {
        None => resp::int(out, 0),
        Some(Value::Str(_)) => resp::error(out, WRONG_TYPE),
        Some(Value::Hash(hash)) => resp::int(out, hash.len() as i64),
    }
}
