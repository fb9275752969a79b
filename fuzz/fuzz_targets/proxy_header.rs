//! The PROXY protocol decoder on arbitrary bytes: no panic; `parse` and
//! `read_header` agree on whether a header is there, what it says and how
//! long it is; `read_header` stops reading once the bytes are refused.
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
        (Err(_), Err(ProxyError::Io(_))) => {}
        (Err(_), Err(_)) => {
            // Refused no further than the shortest refused prefix, or than
            // the 16 bytes read at once to tell the version.
            let (mut undecided, mut decided) = (0, data.len());
            while undecided + 1 < decided {
                let mid = (undecided + decided) / 2;
                match parse(&data[..mid]) {
                    Err(ProxyError::Incomplete { .. }) => undecided = mid,
                    _ => decided = mid,
                }
            }
            assert!(
                pos <= decided.max(16),
                "read {pos}, refusable after {decided}"
            );
        }
    }
});
