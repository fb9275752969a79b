//! Bad settings and unusable addresses fail in `build()` with typed errors.

mod common;

use std::io;

use socketserver::{handlers::Echo, Error, Server, Transport};

#[test]
fn an_address_in_use_is_a_bind_error_that_names_it() {
    for transport in [Transport::Stream, Transport::Datagram] {
        let first = Server::builder()
            .bind("127.0.0.1:0")
            .transport(transport)
            .build(Echo)
            .unwrap();
        let addr = first.local_addr();
        let err = Server::builder()
            .bind(addr.clone())
            .transport(transport)
            .build(Echo)
            .unwrap_err();
        assert!(
            matches!(&err, Error::Bind { addr: a, .. } if *a == addr),
            "{err:?}"
        );
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        let io_err = io::Error::from(err);
        assert_eq!(io_err.kind(), io::ErrorKind::AddrInUse);
        assert!(io_err.to_string().contains(&addr.to_string()));
    }
}

#[test]
fn zero_workers_is_invalid() {
    let err = Server::builder()
        .bind("127.0.0.1:0")
        .workers(0)
        .build(Echo)
        .unwrap_err();
    common::invalid_setting(&err, "workers");
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn an_unresolvable_address_is_a_resolve_error() {
    let err = Server::builder()
        .bind("no-such-host.invalid:80")
        .build(Echo)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Resolve { addr, .. } if addr == "no-such-host.invalid:80"),
        "{err:?}"
    );
    let err = Server::builder()
        .bind("not an address")
        .build(Echo)
        .unwrap_err();
    assert!(matches!(err, Error::Resolve { .. }), "{err:?}");
}

#[test]
fn only_v6_on_ipv4_is_invalid() {
    let err = Server::builder()
        .bind("127.0.0.1:0")
        .only_v6(true)
        .build(Echo)
        .unwrap_err();
    common::invalid_setting(&err, "only_v6");
}

#[test]
fn no_address_is_an_error() {
    let err = Server::builder().build(Echo).unwrap_err();
    assert!(matches!(err, Error::NoAddress));
}

#[test]
fn out_of_range_settings_are_invalid() {
    let cases: Vec<(&str, socketserver::ServerBuilder)> = vec![
        ("max_datagram", Server::builder().max_datagram(0)),
        ("max_datagram", Server::builder().max_datagram(65_508)),
        ("max_outbox", Server::builder().max_outbox(0)),
        ("max_outbox", Server::builder().max_outbox((1 << 30) + 1)),
        ("backlog", Server::builder().backlog(0)),
        ("max_workers", Server::builder().workers(4).max_workers(2)),
        ("max_connections", Server::builder().max_connections(0)),
        ("max_per_source", Server::builder().max_per_source(0)),
        (
            "read_timeout",
            Server::builder().read_timeout(std::time::Duration::ZERO),
        ),
        ("stack_size", Server::builder().stack_size(1024)),
        // Too small for a TLS handshake in a debug build.
        ("stack_size", Server::builder().stack_size(64 * 1024)),
        (
            "parked_stack_size",
            Server::builder().parked_stack_size(64 * 1024),
        ),
        (
            "tcp_keepalive",
            Server::builder().tcp_keepalive(Some(std::time::Duration::ZERO)),
        ),
        (
            "tcp_keepalive",
            Server::builder().tcp_keepalive(Some(std::time::Duration::from_secs(40_000))),
        ),
        (
            "tcp_keepalive",
            Server::builder()
                .transport(socketserver::Transport::Datagram)
                .tcp_keepalive(Some(std::time::Duration::from_secs(60))),
        ),
    ];
    for (name, builder) in cases {
        let err = builder.bind("127.0.0.1:0").build(Echo).unwrap_err();
        common::invalid_setting(&err, name);
    }
}
