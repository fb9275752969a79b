//! The files in `deploy/` and the page that shows them, `docs/deploy.md`:
//! HAProxy accepts the config, the systemd units start example servers
//! that exist with flags they accept, and the page shows each file as it
//! is.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::haproxy::{find_haproxy, have_haproxy};

/// How long an outside program may run before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `cmd` to completion, killing it and failing if it takes longer
/// than `COMMAND_TIMEOUT`. Its output is small: a pipe holds it all.
fn run_bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn haproxy_accepts_the_config() {
    if have_haproxy().is_none() {
        return;
    }
    let config = root().join("deploy/haproxy.cfg");
    let out = run_bounded(
        Command::new(find_haproxy())
            .arg("-c")
            .arg("-f")
            .arg(&config),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "haproxy -c: {}\n{text}", out.status);
    assert!(text.contains("Configuration file is valid"), "{text}");
    // Nothing it would warn about at startup either.
    assert!(!text.contains("[WARNING]"), "{text}");
}

/// Every server line sends the PROXY protocol, and `docs/deploy.md`
/// starts a `whoami_server --proxy-protocol` at each server's address.
#[test]
fn haproxy_servers_are_the_documented_whoami_servers() {
    let config = read(&root().join("deploy/haproxy.cfg"));
    let page = read(&root().join("docs/deploy.md"));
    let lines: Vec<Vec<&str>> = config
        .lines()
        .map(|l| l.split('#').next().unwrap().split_whitespace().collect())
        .collect();
    let defaults = lines
        .iter()
        .find(|words| words.first() == Some(&"default-server"))
        .expect("a default-server line");
    assert!(defaults.contains(&"send-proxy-v2"), "{defaults:?}");
    assert!(defaults.contains(&"check"), "{defaults:?}");
    let servers: Vec<&str> = lines
        .iter()
        .filter(|words| words.first() == Some(&"server"))
        .map(|words| words[2])
        .collect();
    assert!(servers.len() >= 2, "{servers:?}");
    for addr in servers {
        let command = format!("whoami_server --bind {addr} --proxy-protocol");
        assert!(page.contains(&command), "docs/deploy.md lacks `{command}`");
    }
}

/// The long flags the server examples accept, from
/// `examples/common/mod.rs`: each with whether it takes a value.
fn example_flags() -> BTreeMap<String, bool> {
    let source = read(&root().join("examples/common/mod.rs"));
    let mut flags: BTreeMap<String, bool> = source
        .split("Arg::new(")
        .skip(1)
        .filter_map(|arg| {
            let long = arg.split(".long(\"").nth(1)?.split('"').next()?;
            Some((long.to_string(), !arg.contains("ArgAction::SetTrue")))
        })
        .collect();
    flags.insert("help".into(), false);
    for expected in ["bind", "unix", "workers", "backlog", "udp", "reuse-port"] {
        assert!(flags.contains_key(expected), "no --{expected} in {flags:?}");
    }
    flags
}

/// The `[Section]` `Key=value` pairs of a unit file, in order.
fn unit_entries(path: &Path) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut entries = Vec::new();
    for line in read(path).lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not Key=value: {line}", path.display()));
        entries.push((section.clone(), key.to_string(), value.to_string()));
    }
    entries
}

fn values<'a>(entries: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    entries
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

fn unit_files(suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(root().join("deploy/systemd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == suffix))
        .collect();
    files.sort();
    files
}

#[test]
fn services_start_server_examples_with_flags_they_accept() {
    let flags = example_flags();
    let services = unit_files("service");
    assert!(!services.is_empty());
    for path in services {
        let entries = unit_entries(&path);
        let exec = values(&entries, "Service", "ExecStart");
        let [exec] = exec[..] else {
            panic!("{}: one ExecStart wanted, got {exec:?}", path.display());
        };
        let mut words = exec.split_whitespace();
        let program = words.next().unwrap();
        let name = Path::new(program).file_name().unwrap().to_str().unwrap();
        let example = root().join("examples").join(format!("{name}.rs"));
        assert!(
            example.exists(),
            "{}: {program}: no example {name}",
            path.display()
        );
        // Only the examples built on common::serve take a passed socket.
        assert!(
            read(&example).contains("common::serve("),
            "{}: {name} does not serve a passed socket",
            path.display()
        );
        while let Some(word) = words.next() {
            let flag = word
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("{}: stray argument {word:?}", path.display()));
            let (flag, inline_value) = match flag.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (flag, None),
            };
            let takes_value = *flags
                .get(flag)
                .unwrap_or_else(|| panic!("{}: {name} has no --{flag}", path.display()));
            if takes_value && inline_value.is_none() {
                let value = words.next();
                assert!(
                    value.is_some_and(|v| !v.starts_with("--")),
                    "{}: --{flag} needs a value",
                    path.display()
                );
            }
            assert!(
                takes_value || inline_value.is_none(),
                "{}: --{flag} takes no value",
                path.display()
            );
        }
    }
}

/// Each socket unit activates the service of the same name, which
/// requires it back; a datagram socket's service runs with `--udp` and a
/// stream socket's without, or the server would refuse the socket.
#[test]
fn each_socket_activates_a_service_of_its_transport() {
    let sockets = unit_files("socket");
    assert!(!sockets.is_empty());
    for socket in sockets {
        let entries = unit_entries(&socket);
        let stem = socket.file_stem().unwrap().to_str().unwrap();
        let socket_name = format!("{stem}.socket");
        let service = socket.with_extension("service");
        assert!(service.exists(), "{socket_name}: no {}", service.display());
        let service_entries = unit_entries(&service);
        assert!(
            values(&service_entries, "Unit", "Requires").contains(&socket_name.as_str()),
            "{}: Requires={socket_name} wanted",
            service.display()
        );
        let stream = values(&entries, "Socket", "ListenStream");
        let datagram = values(&entries, "Socket", "ListenDatagram");
        assert!(
            stream.len() + datagram.len() == 1,
            "{socket_name}: one ListenStream= or ListenDatagram= wanted: the examples serve one socket"
        );
        let exec = values(&service_entries, "Service", "ExecStart").join(" ");
        let udp = exec.split_whitespace().any(|w| w == "--udp");
        assert_eq!(
            udp,
            !datagram.is_empty(),
            "{socket_name} and {}: --udp must go with ListenDatagram=",
            service.display()
        );
        assert_eq!(
            values(&entries, "Install", "WantedBy"),
            ["sockets.target"],
            "{socket_name}"
        );
    }
}

/// `docs/deploy.md` shows every file in `deploy/` whole, so that what is
/// copied from it is what is checked here.
#[test]
fn the_deploy_page_shows_each_deploy_file() {
    let page = read(&root().join("docs/deploy.md"));
    let mut files = unit_files("socket");
    files.extend(unit_files("service"));
    files.push(root().join("deploy/haproxy.cfg"));
    for path in files {
        let text = read(&path);
        assert!(
            page.contains(&text),
            "docs/deploy.md does not show {} as it is",
            path.display()
        );
    }
}
