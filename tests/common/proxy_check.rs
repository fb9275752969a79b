//! The properties the PROXY protocol decoder must have on any input,
//! shared by the property test (tests/proxy_corpus.rs) and the cargo-fuzz
//! target (fuzz/), which includes this file by path.
#![allow(dead_code)]

use std::io::{self, Cursor};

use socketserver::proxy::{parse, read_header, ProxyError, ProxyHeader};

/// A result in the words of `tests/proxy_corpus/expected.txt`.
pub fn describe(result: &Result<(ProxyHeader, usize), ProxyError>) -> String {
    match result {
        Ok((header, _)) => describe_header(header),
        Err(err) => describe_error(err).to_string(),
    }
}

pub fn describe_header(header: &ProxyHeader) -> String {
    match header {
        ProxyHeader::Proxied {
            source,
            destination,
            transport,
            ..
        } => format!("proxied {source} {destination} {transport}"),
        ProxyHeader::Local => "local".into(),
        ProxyHeader::Unknown => "unknown".into(),
        other => panic!("a header these tests do not know: {other:?}"),
    }
}

pub fn describe_error(err: &ProxyError) -> &'static str {
    match err {
        ProxyError::NotProxy => "not-proxy",
        ProxyError::UnsupportedVersion(_) => "unsupported-version",
        ProxyError::TooLong => "too-long",
        ProxyError::Malformed(_) => "malformed",
        ProxyError::Incomplete { .. } => "incomplete",
        ProxyError::Io(_) => "io",
        other => panic!("an error these tests do not know: {other:?}"),
    }
}

/// `input` as escaped text, for failure messages.
pub fn shown(input: &[u8]) -> String {
    format!("{:?}", input.escape_ascii().to_string())
}

/// Checks what must hold for every input: no panic; `parse` and
/// `read_header` agree; a decoded header's length is within the input and
/// `read_header` reads exactly that many bytes; refused bytes are refused
/// early. Returns what `parse` made of the input.
pub fn check(input: &[u8]) -> String {
    let parsed = parse(input);
    let mut cursor = Cursor::new(input);
    let read = read_header(&mut cursor);
    let pos = usize::try_from(cursor.position()).unwrap();
    let fail = |what: String| -> ! { panic!("{what}\ninput: {}", shown(input)) };
    match (&parsed, &read) {
        (Ok((header, consumed)), Ok(read)) => {
            if *consumed == 0 || *consumed > input.len() {
                fail(format!("consumed {consumed} of {}", input.len()));
            }
            if header != read || pos != *consumed {
                fail(format!("read_header: {read:?} after {pos} bytes"));
            }
            if parse(&input[..*consumed]).ok() != Some((*header, *consumed)) {
                fail("the header alone parses differently".into());
            }
        }
        (Err(ProxyError::Incomplete { needed }), Err(ProxyError::Io(e)))
            if e.kind() == io::ErrorKind::UnexpectedEof =>
        {
            if *needed == 0 {
                fail("incomplete, needing nothing".into());
            }
        }
        // read_header ran out of bytes where parse saw a short bad header.
        (Err(e), Err(ProxyError::Io(io))) if io.kind() == io::ErrorKind::UnexpectedEof => {
            if matches!(e, ProxyError::Io(_)) {
                fail("parse reported an I/O error".into());
            }
        }
        (Err(p), Err(r)) => {
            if describe_error(p) != describe_error(r) || matches!(r, ProxyError::Incomplete { .. })
            {
                fail(format!("parse: {p:?}, read_header: {r:?}"));
            }
            // Refused early: no further than the shortest refused prefix,
            // or than the 16 bytes read at once to tell the version.
            let refused_at = shortest_decided_prefix(input);
            if pos > refused_at.max(16) {
                fail(format!("read {pos} bytes, refusable after {refused_at}"));
            }
        }
        (p, r) => fail(format!("parse: {p:?}, read_header: {r:?}")),
    }
    describe(&parsed)
}

/// The length of the shortest prefix of `input` that `parse` decides on
/// (a header or an error), or `input.len()`. Prefixes are incomplete up to
/// some length and decided from there on, so a binary search finds it.
pub fn shortest_decided_prefix(input: &[u8]) -> usize {
    let (mut undecided, mut decided) = (0, input.len());
    while undecided + 1 < decided {
        let mid = (undecided + decided) / 2;
        match parse(&input[..mid]) {
            Err(ProxyError::Incomplete { .. }) => undecided = mid,
            _ => decided = mid,
        }
    }
    decided
}

/// Every strict prefix of a whole header is incomplete and asks for no byte
/// past the header's end. Of a long header, its first and last 64 prefixes
/// and a sample between them.
pub fn check_prefixes(header: &[u8]) {
    let end = header.len();
    for len in (0..end).filter(|&l| l < 64 || l + 64 > end || l % 61 == 0) {
        match parse(&header[..len]) {
            Err(ProxyError::Incomplete { needed })
                if needed >= 1 && len + needed <= header.len() => {}
            other => panic!("prefix of {len} bytes: {other:?}\ninput: {}", shown(header)),
        }
    }
}
