//! Replies with the client's address as the handler sees it
//! (`conn.peer_addr()`), then closes. Behind HAProxy with the PROXY
//! protocol it shows the real client, not the proxy.
//!
//! ```text
//! cargo run --example whoami_server                    # 127.0.0.1:7070, TCP
//! nc 127.0.0.1 7070                                    # 127.0.0.1:51234
//! cargo run --example whoami_server -- --udp
//! nc -u 127.0.0.1 7070                                 # then press Enter
//! ```

mod common;

use std::io::Write;

use socketserver::Connection;

fn main() -> std::process::ExitCode {
    common::serve(
        "whoami_server",
        "Replies with the client's address as the server sees it, then closes.",
        "127.0.0.1:7070",
        // One write, so that over UDP the reply is one datagram.
        |conn: &mut Connection| conn.write_all(format!("{}\n", conn.peer_addr()).as_bytes()),
    )
}
