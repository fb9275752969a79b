//! An echo server: sends back what it receives, over TCP until the client
//! closes, over UDP one reply datagram per datagram.
//!
//! ```text
//! cargo run --example echo_server              # 127.0.0.1:7007, TCP
//! echo hello | nc -q1 127.0.0.1 7007           # hello
//! cargo run --example echo_server -- --park-idle   # many idle clients, few threads
//! cargo run --example echo_server -- --udp
//! echo hello | nc -u -w1 127.0.0.1 7007        # hello
//! ```

mod common;

use socketserver::handlers::Echo;

fn main() -> std::process::ExitCode {
    common::serve(
        "echo_server",
        "Sends back what each client sends.",
        "127.0.0.1:7007",
        Echo,
    )
}
