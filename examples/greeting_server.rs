//! The seed's threaded greeting server: every client gets `connected`, then
//! the connection closes. Threads come from a bounded pool, not one per
//! client.
//!
//! ```text
//! cargo run --example greeting_server          # 127.0.0.1:5566, TCP
//! nc 127.0.0.1 5566                            # connected
//! cargo run --example greeting_server -- --udp
//! nc -u 127.0.0.1 5566                         # then press Enter
//! ```

mod common;

use socketserver::handlers::Greeting;

fn main() -> std::process::ExitCode {
    common::serve(
        "greeting_server",
        "Sends each client `connected` and closes.",
        "127.0.0.1:5566",
        Greeting::default(),
    )
}
