//! The seed's time server: every client gets the local time, then the
//! connection closes.
//!
//! ```text
//! cargo run --example time_server                      # 127.0.0.1:6789, TCP
//! nc 127.0.0.1 6789                                    # 2026-11-25 03:12:09.123456
//! cargo run --example time_server -- --bind [::]:6789  # IPv6, dual stack
//! cargo run --example time_server -- --udp             # UDP
//! nc -u 127.0.0.1 6789                                 # then press Enter
//! ```

mod common;

use socketserver::handlers::Daytime;

fn main() -> std::process::ExitCode {
    common::serve(
        "time_server",
        "Sends each client the local time (YYYY-MM-DD HH:MM:SS.ffffff) and closes.",
        "127.0.0.1:6789",
        Daytime::new(),
    )
}
