//! The PROXY protocol decoder on arbitrary bytes: no panic, and `parse` and
//! `read_header` agree on whether a header is there, what it says and how
//! long it is.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use socketserver::proxy::{parse, read_header, ProxyError};

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    let mut cursor = Cursor::new(data);
    let read = read_header(&mut cursor);
    let pos = usize::try_from(cursor.position()).unwrap();
    match (parsed, read) {
        (Ok((header, consumed)), Ok(read)) => {
            assert!(consumed > 0 && consumed <= data.len());
            assert_eq!(header, read);
            assert_eq!(pos, consumed, "read_header read past the header");
            assert_eq!(parse(&data[..consumed]).ok(), Some((header, consumed)));
        }
        (Ok(ok), Err(err)) => panic!("parse: {ok:?}, read_header: {err:?}"),
        (Err(err), Ok(ok)) => panic!("parse: {err:?}, read_header: {ok:?}"),
        (Err(ProxyError::Incomplete { needed }), Err(_)) => assert!(needed > 0),
        (Err(_), Err(ProxyError::Incomplete { .. })) => panic!("read_header reported Incomplete"),
        (Err(_), Err(_)) => {}
    }
});
