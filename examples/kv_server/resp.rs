//! RESP2 as redis-server 7.0 reads and writes it: requests (arrays of bulk
//! strings, or inline lines split as `sdssplitargs` splits them) and the
//! reply types. Where Redis's C code has a quirk a client can see, it is
//! kept, so that every reply matches redis-server's byte for byte.

use std::io::{self, BufRead, Write};

/// The longest inline line, and the longest `*N` or `$N` header (Redis's
/// `PROTO_INLINE_MAX_SIZE`).
const MAX_INLINE: usize = 64 * 1024;
/// The longest bulk string taken: smaller than Redis's 512 MB, so that no
/// client can make the process allocate much by announcing a length.
const MAX_BULK: usize = 1024 * 1024;
/// The most arguments in one request, as Redis 6 had it (Redis 7 takes up
/// to 2^31).
const MAX_ARGS: usize = 1024 * 1024;
/// The most bytes one request may hold, its arguments and 32 bytes for
/// each: as Redis's `client-query-buffer-limit` (1 GB), past it the
/// client is closed without a reply.
pub const MAX_REQUEST: usize = 64 * 1024 * 1024;

/// A request a client may send: its arguments, the first the command.
pub type Args = Vec<Vec<u8>>;

/// Reads one request. `None`: the client closed the connection between
/// requests. An empty request (an empty line, `*0`) is `Some` of nothing.
/// A malformed one is a [`ProtocolError`] (kind `InvalidData`): Redis
/// replies with it and closes the connection.
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Args>> {
    let first = match reader.fill_buf()?.first() {
        None => return Ok(None),
        Some(&b) => b,
    };
    if first != b'*' {
        let line = read_until(reader, b'\n', "too big inline request")?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        return split_args(line)
            .map(Some)
            .ok_or_else(|| bad("unbalanced quotes in request"));
    }
    let header = read_header(reader, "too big mbulk count string")?;
    let count = match parse_i64(&header[1..]) {
        Some(n) if n <= 0 => return Ok(Some(Vec::new())),
        Some(n) if n as u64 <= MAX_ARGS as u64 => n as usize,
        _ => return Err(bad("invalid multibulk length")),
    };
    // Room grows with what arrives, not with what the header announces.
    let mut args = Vec::with_capacity(count.min(1024));
    let mut size = 0;
    for _ in 0..count {
        let header = read_header(reader, "too big bulk count string")?;
        // Redis looks at the byte where the header starts, even when the
        // header is empty (then it is the CR).
        match header.first().copied().unwrap_or(b'\r') {
            b'$' => {}
            // `%c` of a NUL ends Redis's formatted message there.
            0 => return Err(bad("expected '$', got '")),
            b'\r' | b'\n' => return Err(bad("expected '$', got ' '")),
            other => {
                let mut msg = b"expected '$', got '".to_vec();
                msg.extend_from_slice(&[other, b'\'']);
                return Err(ProtocolError(msg).into());
            }
        }
        let len = match parse_i64(&header[1..]) {
            Some(n) if n >= 0 && n as u64 <= MAX_BULK as u64 => n as usize,
            _ => return Err(bad("invalid bulk length")),
        };
        size += len + 32;
        if size > MAX_REQUEST {
            return Err(io::Error::new(io::ErrorKind::InvalidData, TooBig));
        }
        // The two bytes after the data are skipped unread, as Redis does.
        let mut arg = vec![0; len + 2];
        reader.read_exact(&mut arg)?;
        arg.truncate(len);
        args.push(arg);
    }
    Ok(Some(args))
}

/// Why a request could not be read, in the words of Redis's
/// `-ERR Protocol error: ...` (bytes: it may quote one the client sent).
#[derive(Debug)]
pub struct ProtocolError(pub Vec<u8>);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Protocol error: {}", String::from_utf8_lossy(&self.0))
    }
}

impl std::error::Error for ProtocolError {}

impl From<ProtocolError> for io::Error {
    fn from(e: ProtocolError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

impl ProtocolError {
    /// The one in `e`, if it is one.
    pub fn of(e: &io::Error) -> Option<&ProtocolError> {
        e.get_ref()?.downcast_ref()
    }
}

/// A request past [`MAX_REQUEST`]: the client is closed without a reply.
#[derive(Debug)]
pub struct TooBig;

impl std::fmt::Display for TooBig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a request of more than {} MiB", MAX_REQUEST >> 20)
    }
}

impl std::error::Error for TooBig {}

fn bad(msg: &str) -> io::Error {
    ProtocolError(msg.as_bytes().to_vec()).into()
}

/// A `*N` or `$N` header: the bytes up to a CR, which Redis takes with the
/// byte after it, whatever that is.
fn read_header(reader: &mut impl BufRead, too_big: &str) -> io::Result<Vec<u8>> {
    let line = read_until(reader, b'\r', too_big)?;
    let mut lf = [0];
    reader.read_exact(&mut lf)?;
    Ok(line)
}

/// The bytes up to `end` (taken, not returned), at most [`MAX_INLINE`].
fn read_until(reader: &mut impl BufRead, end: u8, too_big: &str) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let (take, done) = match buf.iter().position(|&b| b == end) {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > MAX_INLINE {
            return Err(bad(too_big));
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take + usize::from(done));
        if done {
            return Ok(line);
        }
    }
}

/// An inline line split into arguments as Redis's `sdssplitargs` splits
/// it: blanks separate, `"..."` takes the escapes `\n \r \t \b \a \xHH`,
/// `'...'` only `\'`; a closing quote must be followed by a blank or the
/// end. `None`: unbalanced quotes. The line ends at a NUL (a C string).
pub fn split_args(line: &[u8]) -> Option<Args> {
    let line = c_str(line);
    let at = |k: usize| line.get(k).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let (mut in_double, mut in_single, mut done) = (false, false, false);
        let mut arg = Vec::new();
        while !done {
            let c = at(p);
            if in_double {
                if let (b'\\', b'x', Some(hi), Some(lo)) =
                    (c, at(p + 1), hex(at(p + 2)), hex(at(p + 3)))
                {
                    arg.push(hi * 16 + lo);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    arg.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    arg.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    arg.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    arg.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => arg.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        args.push(arg);
    }
}

/// C's `isspace` in the C locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The bytes before the first NUL: what C code sees of an argument when it
/// formats it with `%s` or compares it with `strcasecmp`.
pub fn c_str(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(end) => &bytes[..end],
        None => bytes,
    }
}

/// A number as Redis's `string2ll` reads it: decimal digits with an
/// optional `-`, no sign `+`, no blanks, no leading zeros, within `i64`.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    match negative {
        true if v <= i64::MIN.unsigned_abs() => Some(0i64.wrapping_sub_unsigned(v)),
        false if v <= i64::MAX as u64 => Some(v as i64),
        _ => None,
    }
}

pub fn ok(out: &mut Vec<u8>) {
    out.extend_from_slice(b"+OK\r\n");
}

pub fn int(out: &mut Vec<u8>, n: i64) {
    let _ = write!(out, ":{n}\r\n");
}

pub fn array(out: &mut Vec<u8>, len: usize) {
    let _ = write!(out, "*{len}\r\n");
}

pub fn bulk(out: &mut Vec<u8>, value: &[u8]) {
    let _ = write!(out, "${}\r\n", value.len());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The null bulk string (RESP2's nil).
pub fn nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// An error reply from a message written here: `-ERR ` unless the message
/// names its own code (`-WRONGTYPE ...`), as `addReplyError` does.
pub fn error(out: &mut Vec<u8>, msg: &str) {
    if !msg.starts_with('-') {
        out.extend_from_slice(b"-ERR ");
    }
    out.extend_from_slice(msg.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// An error reply that quotes what a client sent, made safe as Redis's
/// `addReplyErrorFormat` makes it: CRs and LFs at either end dropped,
/// then as [`error_safe`].
pub fn error_quoting(out: &mut Vec<u8>, msg: &[u8]) {
    let line_end = |b: &u8| *b == b'\r' || *b == b'\n';
    let start = msg.iter().take_while(|b| line_end(b)).count();
    let end = msg.len()
        - msg[start..]
            .iter()
            .rev()
            .take_while(|b| line_end(b))
            .count();
    error_safe(out, &msg[start..end]);
}

/// An error reply that quotes what a client sent, with each CR and LF made
/// a space, as Redis's `rejectCommand` makes it: one line of the protocol
/// whatever the client sent. (Redis leaves the other bytes as they are.)
pub fn error_safe(out: &mut Vec<u8>, msg: &[u8]) {
    if msg.first() != Some(&b'-') {
        out.extend_from_slice(b"-ERR ");
    }
    out.extend(msg.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
    out.extend_from_slice(b"\r\n");
}
