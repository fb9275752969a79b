//! `tcp_keepalive`: the kernel's keepalive timer runs on each accepted
//! connection with the idle time set, in both modes, and on none without
//! it. Read from `/proc/net/tcp`, where the kernel shows each socket's
//! pending timer.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use socketserver::{Connection, Server};

use common::{connect, server_side_timer, spawn};

/// Says `ready` (its socket is configured by then), then waits for input.
fn ready_then_wait(conn: &mut Connection) -> std::io::Result<()> {
    conn.write_all(b"ready\n")?;
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest)?;
    Ok(())
}

fn timer_with(park: bool, keepalive: Option<Duration>) -> (u8, Duration) {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .tcp_keepalive(keepalive),
        ready_then_wait,
    );
    let mut client = connect(&server.local_addr());
    let mut ready = [0; 6];
    client.read_exact(&mut ready).unwrap();
    let port = server.local_addr().inet().unwrap().port();
    let timer = server_side_timer(port, &client);
    drop(client);
    server.stop().unwrap();
    timer
}

both_modes!(the_keepalive_timer_runs_with_the_idle_time_set);
fn the_keepalive_timer_runs_with_the_idle_time_set(park: bool) {
    let idle = Duration::from_secs(100);
    let (timer, when) = timer_with(park, Some(idle));
    assert_eq!(timer, 2, "the keepalive timer");
    assert!(
        when > idle - Duration::from_secs(10) && when <= idle,
        "fires in {when:?}"
    );
    let (timer, _) = timer_with(park, None);
    assert_eq!(timer, 0, "no timer without tcp_keepalive");
}
