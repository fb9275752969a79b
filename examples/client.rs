//! The seed's client: connects, reads up to 1024 bytes, prints them.
//!
//! ```text
//! cargo run --example client                             # TCP to 127.0.0.1:6789
//! cargo run --example client -- --connect [::1]:6789
//! cargo run --example client -- --udp                    # sends one datagram, prints the reply
//! cargo run --example client -- --connect 127.0.0.1:7007 --send hello
//! ```

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Connects to a server, reads up to 1024 bytes and prints them.
#[derive(Parser)]
#[command(name = "client")]
struct Args {
    /// Server address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6789")]
    connect: String,
    /// Use UDP: send one datagram (the --send text, or empty) and print the reply.
    #[arg(long)]
    udp: bool,
    /// Text to send before reading (TCP: then half-close the connection).
    #[arg(long, value_name = "TEXT")]
    send: Option<String>,
    /// Seconds to wait for the reply.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    timeout: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match talk(&args) {
        Ok(reply) => {
            println!("{}", String::from_utf8_lossy(&reply));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("client: {}: {e}", args.connect);
            ExitCode::FAILURE
        }
    }
}

fn talk(args: &Args) -> std::io::Result<Vec<u8>> {
    let timeout = Some(Duration::from_secs(args.timeout));
    let addr = args.connect.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "address did not resolve")
    })?;
    let send = args.send.as_deref().unwrap_or("").as_bytes();
    let mut buf = vec![0u8; 1024];
    if args.udp {
        let local = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(local)?;
        socket.set_read_timeout(timeout)?;
        socket.send_to(send, addr)?;
        let (n, _) = socket
            .recv_from(&mut buf)
            .map_err(|e| no_reply(e, args.timeout))?;
        buf.truncate(n);
        return Ok(buf);
    }
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(args.timeout))?;
    stream.set_read_timeout(timeout)?;
    if args.send.is_some() {
        stream.write_all(send)?;
        stream.shutdown(std::net::Shutdown::Write)?;
    }
    // As the seed's client does: one recv of up to 1024 bytes.
    let n = stream
        .read(&mut buf)
        .map_err(|e| no_reply(e, args.timeout))?;
    buf.truncate(n);
    Ok(buf)
}

/// A receive timeout reads as "Resource temporarily unavailable"; say what
/// it means.
fn no_reply(e: std::io::Error, secs: u64) -> std::io::Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no reply within {secs} s (is a server listening there, on this transport?)"),
        ),
        _ => e,
    }
}
