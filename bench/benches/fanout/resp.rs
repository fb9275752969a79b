//! The few RESP2 bytes the bench needs: the two commands it sends
//! (`SUBSCRIBE chan`, `PUBLISH chan <64 bytes>`) and a parser for what it
//! reads back (integer replies, errors, and the three-element pushes
//! `subscribe chan 1` and `message chan <payload>`).
//!
//! The parser borrows from the read buffer and allocates nothing: a
//! 10,000-subscriber run parses millions of pushes a second on a few
//! threads. It takes no frame longer than [`MAX_FRAME`], so that a server
//! answering something unexpected costs a clear error, not memory.

use std::fmt;

/// The one channel every subscriber listens on and the publisher sends to.
pub const CHANNEL: &[u8] = b"chan";
/// Bytes of every message's payload.
pub const PAYLOAD: usize = 64;
/// Digits of the publish time (nanoseconds) at the start of a payload:
/// fixed width, so that every payload has the same length.
const STAMP_DIGITS: usize = 20;
/// Bytes of one message push as a subscriber reads it:
/// `*3 $7 message $4 chan $64 <payload>`, each with its CR LF.
pub const PUSH_BYTES: u64 = 34 + PAYLOAD as u64;
/// The longest frame accepted. A message push is 98 bytes; an error line
/// from a server that lacks a command is well under this.
pub const MAX_FRAME: usize = 4096;

/// `SUBSCRIBE chan`.
pub const SUBSCRIBE: &[u8] = b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nchan\r\n";

/// Appends `PUBLISH chan <payload>`, the payload carrying `stamp` (the
/// publish time, nanoseconds since the bench's base instant) as 20 ASCII
/// digits, then filler to 64 bytes.
pub fn publish(out: &mut Vec<u8>, stamp: u64) {
    out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nchan\r\n$64\r\n");
    let mut digits = [b'0'; STAMP_DIGITS];
    let mut v = stamp;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&digits);
    out.extend_from_slice(&[b'.'; PAYLOAD - STAMP_DIGITS]);
    out.extend_from_slice(b"\r\n");
}

/// The publish time a payload carries, if it is one of the bench's.
pub fn stamp(payload: &[u8]) -> Option<u64> {
    if payload.len() != PAYLOAD {
        return None;
    }
    payload[..STAMP_DIGITS].iter().try_fold(0u64, |v, &b| {
        b.is_ascii_digit()
            .then(|| v.wrapping_mul(10).wrapping_add(u64::from(b - b'0')))
    })
}

/// One non-array RESP2 value, or an array's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer(i64),
    /// `None`: the null bulk string.
    Bulk(Option<&'a [u8]>),
    /// The element count (`None`: the null array).
    Array(Option<usize>),
}

/// One whole frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A value that is not an array: a reply to PUBLISH, or an error.
    Single(Item<'a>),
    /// A three-element array of two bulk strings and one value: a push.
    Push {
        kind: &'a [u8],
        channel: &'a [u8],
        data: Item<'a>,
    },
}

/// The start of `bytes`, printable, for error messages.
pub struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self.0.len().min(120);
        f.write_str("\"")?;
        for &b in &self.0[..cut] {
            match b {
                b' '..=b'~' => write!(f, "{}", b as char)?,
                _ => write!(f, "{}", b.escape_ascii())?,
            }
        }
        if cut < self.0.len() {
            f.write_str("...")?;
        }
        f.write_str("\"")
    }
}

impl fmt::Display for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Single(item) => write!(f, "{item}"),
            Frame::Push {
                kind,
                channel,
                data,
            } => write!(f, "[{}, {}, {data}]", Shown(kind), Shown(channel)),
        }
    }
}

impl fmt::Display for Item<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Simple(s) => write!(f, "+{}", Shown(s)),
            Item::Error(s) => write!(f, "-{}", Shown(s)),
            Item::Integer(i) => write!(f, ":{i}"),
            Item::Bulk(Some(s)) => write!(f, "${}", Shown(s)),
            Item::Bulk(None) => write!(f, "$-1 (null)"),
            Item::Array(n) => write!(f, "an array of {n:?} elements"),
        }
    }
}

/// Parses one frame at the start of `buf`: the frame and the bytes it
/// took, `Ok(None)` if `buf` holds only part of one, or what is wrong.
pub fn frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, String> {
    let Some((first, mut at)) = item(buf, 0)? else {
        return Ok(None);
    };
    match first {
        Item::Array(Some(3)) => {
            let mut items = [Item::Array(None); 3];
            for slot in &mut items {
                let Some((it, next)) = item(buf, at)? else {
                    return Ok(None);
                };
                *slot = it;
                at = next;
            }
            match items {
                [Item::Bulk(Some(kind)), Item::Bulk(Some(channel)), data]
                    if !matches!(data, Item::Array(_)) =>
                {
                    Ok(Some((
                        Frame::Push {
                            kind,
                            channel,
                            data,
                        },
                        at,
                    )))
                }
                _ => Err(format!(
                    "unexpected array [{}, {}, {}]",
                    items[0], items[1], items[2]
                )),
            }
        }
        Item::Array(_) => Err(format!("unexpected {first}")),
        single => Ok(Some((Frame::Single(single), at))),
    }
}

/// One item at `buf[at..]`, and where the next starts.
fn item(buf: &[u8], at: usize) -> Result<Option<(Item<'_>, usize)>, String> {
    let Some(rest) = buf.get(at..).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
        if rest.len() > MAX_FRAME {
            return Err(format!("a line longer than {MAX_FRAME} bytes"));
        }
        return Ok(None);
    };
    if end == 0 || rest[end - 1] != b'\r' {
        return Err(format!(
            "a line not ended by CR LF: {}",
            Shown(&rest[..end])
        ));
    }
    let line = &rest[1..end - 1];
    let next = at + end + 1;
    let number = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("a bad number in {}", Shown(&rest[..end - 1])))
    };
    let item = match rest[0] {
        b'+' => Item::Simple(line),
        b'-' => Item::Error(line),
        b':' => Item::Integer(number()?),
        b'*' => match number()? {
            -1 => Item::Array(None),
            n if (0..=16).contains(&n) => Item::Array(Some(n as usize)),
            n => return Err(format!("an array of {n} elements")),
        },
        b'$' => match number()? {
            -1 => Item::Bulk(None),
            n if (0..=MAX_FRAME as i64).contains(&n) => {
                let n = n as usize;
                let Some(body) = buf.get(next..next + n + 2) else {
                    return Ok(None);
                };
                if &body[n..] != b"\r\n" {
                    return Err("a bulk string not ended by CR LF".into());
                }
                return Ok(Some((Item::Bulk(Some(&body[..n])), next + n + 2)));
            }
            n => return Err(format!("a bulk string of {n} bytes")),
        },
        _ => return Err(format!("not RESP2: {}", Shown(&rest[..end - 1]))),
    };
    Ok(Some((item, next)))
}

// Run by the stand-alone copy used to develop the bench; see hist.rs.
#[cfg(test)]
mod tests {
    #[test]
    fn publish_round_trips_its_stamp() {
        use super::{frame, publish, stamp, Frame, Item, PAYLOAD, PUSH_BYTES};
        let mut out = Vec::new();
        publish(&mut out, 1_234_567_890_123);
        assert_eq!(out.len(), 27 + 5 + PAYLOAD + 2);
        let payload = &out[out.len() - PAYLOAD - 2..out.len() - 2];
        assert_eq!(stamp(payload), Some(1_234_567_890_123));
        // As a subscriber receives it.
        let mut push = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$64\r\n".to_vec();
        push.extend_from_slice(payload);
        push.extend_from_slice(b"\r\n");
        assert_eq!(push.len() as u64, PUSH_BYTES);
        let (f, n) = frame(&push).unwrap().unwrap();
        assert_eq!(n, push.len());
        assert!(matches!(f, Frame::Push { data: Item::Bulk(Some(p)), .. } if p == payload));
    }

    #[test]
    fn parses_pushes_and_partial_frames() {
        use super::{frame, Frame, Item};
        let push = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$2\r\nhi\r\n";
        for cut in 0..push.len() {
            assert_eq!(frame(&push[..cut]), Ok(None), "cut at {cut}");
        }
        let (f, n) = frame(push).unwrap().unwrap();
        assert_eq!(n, push.len());
        assert_eq!(
            f,
            Frame::Push {
                kind: b"message",
                channel: b"chan",
                data: Item::Bulk(Some(b"hi"))
            }
        );
        let err = b"-ERR unknown command 'SUBSCRIBE'\r\n";
        let (f, _) = frame(err).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::Single(Item::Error(b"ERR unknown command 'SUBSCRIBE'"))
        );
        assert!(frame(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n").is_err());
    }
}
