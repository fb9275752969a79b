//! The PROXY protocol decoder on arbitrary bytes, with the checks of the
//! property test (tests/common/proxy_check.rs): no panic; `parse` and
//! `read_header` agree on whether a header is there, what it says and how
//! long it is; `read_header` stops reading once the bytes are refused; a
//! partial header never asks for bytes past its end.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/proxy_check.rs"]
mod proxy_check;

fuzz_target!(|data: &[u8]| {
    proxy_check::check(data);
    if let Ok((_, consumed)) = socketserver::proxy::parse(data) {
        proxy_check::check_prefixes(&data[..consumed]);
    }
});
