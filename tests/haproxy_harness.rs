//! The HAProxy harness (tests/common/haproxy.rs) against the PROXY protocol
//! decoder: a real HAProxy relays a client to a plain listener, and the
//! header it sends decodes to the client's real address, with the client's
//! bytes intact after it.
//!
//! No server of this crate takes part (the backend is a plain listener), so
//! there is no serving mode to vary: the PROXY protocol is served in both
//! modes in `proxy_protocol.rs`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, TcpListener};
use std::time::Duration;

use common::haproxy::{self, have_haproxy, HaProxy, SendProxy};
use socketserver::proxy::{read_header, ProxyHeader};
use socketserver::Transport;

/// A backend on loopback of the given family, or `None` without IPv6.
fn backend(ip: IpAddr) -> Option<TcpListener> {
    TcpListener::bind((ip, 0)).ok()
}

/// Relays one client through `proxy` to `backend`; checks the header and
/// that bytes pass intact both ways.
fn relay(proxy: &HaProxy, backend: &TcpListener) {
    let mut client = proxy.connect();
    let request = b"hello through haproxy\r\n\x00\xff";
    client.write_all(request).unwrap();

    let (mut server, _) = haproxy::accept(backend);
    let header = read_header(&mut server).expect("a PROXY header");
    assert!(
        matches!(
            header,
            ProxyHeader::Proxied {
                transport: Transport::Stream,
                ..
            }
        ),
        "{header:?}"
    );
    assert_eq!(header.source(), Some(client.local_addr().unwrap()));
    assert_eq!(header.destination(), Some(proxy.frontend()));

    let mut received = vec![0; request.len()];
    server.read_exact(&mut received).unwrap();
    assert_eq!(received, request);
    server.write_all(b"reply").unwrap();
    drop(server);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"reply");
}

fn relay_over(ip: IpAddr, send_proxy: SendProxy) {
    let Some(backend) = backend(ip) else {
        eprintln!("skipped: no {ip} on this machine");
        return;
    };
    let proxy = HaProxy::builder(backend.local_addr().unwrap(), send_proxy)
        .frontend_ip(ip)
        .start();
    relay(&proxy, &backend);
}

#[test]
fn config_is_valid_without_warnings() {
    if have_haproxy().is_none() {
        return;
    }
    let backend = backend([127, 0, 0, 1].into()).unwrap();
    let proxy = HaProxy::builder(backend.local_addr().unwrap(), SendProxy::V2)
        .health_checks(Duration::from_secs(60))
        .start();
    let check = proxy.check_config();
    assert!(check.contains("Configuration file is valid"), "{check}");
    assert!(!check.contains("WARNING"), "{check}");
    assert!(!proxy.stderr().contains("WARNING"), "{}", proxy.stderr());
    println!("{}", haproxy::version());
}

#[test]
fn send_proxy_v1_over_ipv4() {
    if have_haproxy().is_none() {
        return;
    }
    relay_over([127, 0, 0, 1].into(), SendProxy::V1);
}

#[test]
fn send_proxy_v2_over_ipv4() {
    if have_haproxy().is_none() {
        return;
    }
    relay_over([127, 0, 0, 1].into(), SendProxy::V2);
}

#[test]
fn send_proxy_v1_over_ipv6() {
    if have_haproxy().is_none() {
        return;
    }
    relay_over(Ipv6Addr::LOCALHOST.into(), SendProxy::V1);
}

#[test]
fn send_proxy_v2_over_ipv6() {
    if have_haproxy().is_none() {
        return;
    }
    relay_over(Ipv6Addr::LOCALHOST.into(), SendProxy::V2);
}

#[test]
fn one_haproxy_relays_many_clients() {
    if have_haproxy().is_none() {
        return;
    }
    let backend = backend([127, 0, 0, 1].into()).unwrap();
    let proxy = HaProxy::start(backend.local_addr().unwrap(), SendProxy::V2);
    for _ in 0..3 {
        relay(&proxy, &backend);
    }
}

/// Health checks: version 2 sends LOCAL; version 1 a line with the check
/// connection's own addresses.
#[test]
fn health_checks_send_their_own_headers() {
    if have_haproxy().is_none() {
        return;
    }
    for send_proxy in [SendProxy::V1, SendProxy::V2] {
        let backend = backend([127, 0, 0, 1].into()).unwrap();
        let _proxy = HaProxy::builder(backend.local_addr().unwrap(), send_proxy)
            .health_checks(Duration::from_millis(50))
            .start();
        let (mut check, from) = haproxy::accept(&backend);
        let header = read_header(&mut check).expect("a PROXY header");
        match send_proxy {
            SendProxy::V2 => assert_eq!(header, ProxyHeader::Local),
            SendProxy::V1 => {
                assert_eq!(header.source(), Some(from));
                assert_eq!(header.destination(), Some(check.local_addr().unwrap()));
            }
        }
    }
}
