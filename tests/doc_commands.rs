//! Every shell command that README.md and the pages in `docs/` show, in
//! their ```sh, ```bash and ```console blocks, is either run here, and
//! does what the text around it says, or listed in [`NOT_RUN`] with the
//! reason. [`every_command_is_run_or_listed`] fails on a command that is
//! neither, and on an entry that no page shows any more, so the commands
//! and this test cannot drift apart.
//!
//! A command is known by its text, continuation lines joined and runs of
//! blanks made one, its trailing `# comment` included: the comment is
//! often the claim (`# echo_server_accepted_total 0`), so changing it
//! means looking at the check again.
//!
//! The commands of a scenario (a `#[test]` below, named in [`RUN`]) run
//! in one `bash` reading them one at a time, as a reader would type them
//! in a terminal, in a scratch directory where `target/debug/examples`
//! and `deploy` lead to the real ones; so `&`, `$!` and `jobs` mean what
//! they mean there. Nothing runs cargo: `cargo`
//! in that shell is a function that runs an example already built
//! (`cargo test` builds them) for `cargo run --example NAME -- ARGS`, and
//! checks that it is built for `cargo build --example NAME`. A command the
//! text says runs in a terminal of its own (a server in the foreground)
//! is started in the background instead, and signalled as Ctrl-C would.
//!
//! Each command has [`COMMAND_TIMEOUT`]; the shell and everything started
//! from it is one process group, killed when the scenario ends, passes or
//! fails. The documented ports are fixed (6789, 7007, ...), so the
//! scenarios take turns. A scenario that needs an outside program (`nc`,
//! `curl`, `socat`, `openssl`, `haproxy`, `redis-cli`, `ss`,
//! `systemd-socket-activate`) says so in one line and passes when it is
//! missing, unless `SOCKETSERVER_TEST_REQUIRE_ALL` is set. All of it
//! takes a few seconds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{assert_seed_time, example, outside_program, tcp_exchange, REQUIRE_ALL};

/// The commands shown that are not run here, each with why.
const NOT_RUN: &[(&str, &str)] = &[
    // README.md
    (
        "cargo test --all-features # unit, integration and doc tests, TLS included",
        "the whole test suite, this test included: CI runs it",
    ),
    (
        "cargo bench -p socketserver-bench --bench peers # all but the TLS row, about 7 minutes",
        "takes minutes: a benchmark",
    ),
    // docs/performance.md
    (
        "cargo bench -p socketserver-bench --bench peers # the comparison against peers: markdown tables, about 7 minutes",
        "takes minutes: a benchmark",
    ),
    (
        "cargo bench -p socketserver-bench --bench hot_paths # criterion micro-benches of the hot paths, about 30 s",
        "takes minutes to build and run: a benchmark",
    ),
    (
        "cargo bench -p socketserver-bench --bench peers -- --rounds 9 --secs 2 --only AE --servers socketserver,tokio,bare",
        "takes minutes: a benchmark",
    ),
    (
        "cargo bench -p socketserver-bench --bench peers -- --only D --rounds 9 --secs 1 --servers socketserver,tokio # UDP, about 90 s",
        "takes minutes: a benchmark",
    ),
    (
        "cargo bench -p socketserver-bench --bench peers --features tls -- --only HI # TLS against tokio-rustls, about 70 s",
        "takes minutes: a benchmark",
    ),
    (
        "cargo bench -p socketserver-bench --bench peers --features tls -- --only HI",
        "takes minutes: a benchmark",
    ),
    (
        "bash bench/redis.sh 5 100000 # 5 rounds of 100,000 requests per test; needs redis-server and redis-benchmark",
        "takes minutes: a benchmark, and builds a release kv_server with cargo",
    ),
    (
        "cargo build --release --examples && cargo bench -p socketserver-bench --bench fanout -- --slow # about 4 minutes",
        "takes minutes: a release build and a benchmark",
    ),
    // docs/reliability.md
    (
        "cargo test --test fd_exhaustion --test hostile_clients --test panics --test flood --test shutdown --test datagrams --test soak --test elastic_pool --test logging --test loop_guard --test upgrade --test queue_timeout -- --nocapture --test-threads 1",
        "runs cargo: those tests are part of the suite this test is in",
    ),
    // docs/deploy.md: installing under systemd
    (
        "cargo build --release --example time_server",
        "a release build: this test runs no cargo",
    ),
    (
        "sudo install -m 755 target/release/examples/time_server /usr/local/bin/",
        "needs root: installs into /usr/local/bin",
    ),
    (
        "sudo install -m 755 target/release/examples/time_server /usr/local/bin/ # cp fails on a running binary: \"Text file busy\"",
        "needs root: installs into /usr/local/bin",
    ),
    (
        "sudo cp deploy/systemd/time-server.socket deploy/systemd/time-server.service /etc/systemd/system/",
        "needs root: installs systemd units (tests/deploy_files.rs checks the files)",
    ),
    (
        "sudo cp deploy/systemd/time-server-udp.socket deploy/systemd/time-server-udp.service /etc/systemd/system/",
        "needs root: installs systemd units (tests/deploy_files.rs checks the files)",
    ),
    (
        "sudo systemd-analyze verify /etc/systemd/system/time-server.socket /etc/systemd/system/time-server.service",
        "needs root and the units installed by the lines above",
    ),
    (
        "sudo systemctl daemon-reload",
        "needs root and systemd as PID 1",
    ),
    (
        "sudo systemctl enable --now time-server.socket",
        "needs root and systemd as PID 1",
    ),
    (
        "sudo systemctl enable --now time-server-udp.socket",
        "needs root and systemd as PID 1",
    ),
    (
        "sudo systemctl restart time-server.service",
        "needs root and systemd as PID 1",
    ),
    (
        "systemctl status time-server.socket time-server.service",
        "needs systemd as PID 1 and the units installed",
    ),
    (
        "journalctl -u time-server.service # listening on [::]:6789 (tcp), ...",
        "needs systemd's journal and the units installed",
    ),
    (
        "nc 127.0.0.1 6789 # starts time-server.service, prints the time (systemd)",
        "needs the socket unit installed and enabled by systemd (socket_activation runs the same without systemd)",
    ),
    (
        "echo | nc -u -w1 127.0.0.1 6789 # starts time-server-udp.service, prints the time (systemd)",
        "needs the socket unit installed and enabled by systemd (socket_activation runs the same without systemd)",
    ),
];

/// The commands run here: by which scenario (the `#[test]` of that name),
/// in the order it runs them.
const RUN: &[(&str, &str)] = &[
    // README.md
    (
        "try_it",
        "cargo run --example time_server # serves the local time on 127.0.0.1:6789",
    ),
    ("try_it", "nc 127.0.0.1 6789 # 2026-11-25 03:12:09.123456"),
    (
        "ipv6_and_udp",
        "cargo run --example time_server -- --bind '[::]:6789' # IPv6, also takes IPv4",
    ),
    ("ipv6_and_udp", "nc ::1 6789 # from another terminal: the time"),
    (
        "ipv6_and_udp",
        "cargo run --example time_server -- --bind '[::]:6789' --udp # UDP",
    ),
    (
        "ipv6_and_udp",
        "echo | nc -u -w1 ::1 6789 # from another terminal: the time",
    ),
    (
        "metrics",
        "cargo run --example echo_server -- --metrics 127.0.0.1:9100",
    ),
    (
        "metrics",
        "curl -s 127.0.0.1:9100/metrics | grep '^echo_server_accepted_total' # echo_server_accepted_total 0",
    ),
    // docs/deploy.md
    ("upgrade", "cargo build --example echo_server"),
    (
        "upgrade",
        "target/debug/examples/echo_server --bind 127.0.0.1:7007 & # listening on 127.0.0.1:7007 (tcp)",
    ),
    (
        "upgrade",
        "kill -USR2 $! # the new process prints listening on ..., this one shut down: ...",
    ),
    (
        "upgrade",
        "echo hi | nc -q1 127.0.0.1 7007 # hi, from the new process",
    ),
    (
        "upgrade",
        "pkill -TERM -u \"$(id -u)\" -x echo_server # the new one drains and exits",
    ),
    (
        "log_lines",
        "RUST_LOG=debug cargo run --example time_server # then Ctrl-C",
    ),
    (
        "unix_socket",
        "cargo run --example time_server -- --unix time.sock # listening on unix:time.sock (stream)",
    ),
    (
        "unix_socket",
        "nc -U time.sock # from another terminal: the time",
    ),
    ("socket_activation", "cargo build --example time_server"),
    (
        "socket_activation",
        "systemd-socket-activate -l 127.0.0.1:6789 --fdname=time -E RUST_LOG=info target/debug/examples/time_server",
    ),
    (
        "socket_activation",
        "nc 127.0.0.1 6789 # from another terminal: the first connection starts the server",
    ),
    (
        "socket_activation",
        "systemd-socket-activate --datagram -l 127.0.0.1:6789 --fdname=time-udp target/debug/examples/time_server --udp",
    ),
    (
        "socket_activation",
        "echo | nc -u -w1 127.0.0.1 6789 # from another terminal: the first datagram starts the server",
    ),
    (
        "reuse_port",
        "cargo build --example time_server --example greeting_server",
    ),
    (
        "reuse_port",
        "target/debug/examples/time_server --bind 127.0.0.1:6789 --reuse-port &",
    ),
    (
        "reuse_port",
        "target/debug/examples/time_server --bind 127.0.0.1:6789 --reuse-port &",
    ),
    (
        "reuse_port",
        "ss -ltnp 'sport = :6789' # two LISTEN lines, one per process",
    ),
    (
        "reuse_port",
        "target/debug/examples/time_server --bind 127.0.0.1:6790 --reuse-port &",
    ),
    (
        "reuse_port",
        "target/debug/examples/greeting_server --bind 127.0.0.1:6790 --reuse-port &",
    ),
    (
        "reuse_port",
        "for i in 1 2 3 4 5 6 7 8; do nc 127.0.0.1 6790; echo; done",
    ),
    ("reuse_port", "kill $(jobs -p) # each prints shut down: ..."),
    ("haproxy", "cargo build --example whoami_server"),
    (
        "haproxy",
        "target/debug/examples/whoami_server --bind 127.0.0.1:7071 --proxy-protocol &",
    ),
    (
        "haproxy",
        "target/debug/examples/whoami_server --bind 127.0.0.1:7072 --proxy-protocol &",
    ),
    (
        "haproxy",
        "target/debug/examples/whoami_server --bind 127.0.0.1:7073 --proxy-protocol &",
    ),
    (
        "haproxy",
        "haproxy -c -f deploy/haproxy.cfg # Configuration file is valid (Debian: /usr/sbin/haproxy)",
    ),
    ("haproxy", "haproxy -f deploy/haproxy.cfg &"),
    (
        "haproxy",
        "nc 127.0.0.1 8080 # 127.0.0.1:41594: nc's own address and port",
    ),
    ("haproxy", "kill $(jobs -p)"),
    // docs/examples.md
    ("kv_server", "cargo run --example kv_server"),
    (
        "kv_server",
        "redis-cli -p 6380 set k v # from another terminal: OK",
    ),
    ("kv_server", "redis-cli -p 6380 get k # v"),
    (
        "inetd",
        "cargo run --example inetd # 127.0.0.1; --bind :: for IPv6 and IPv4",
    ),
    // docs/tls.md
    (
        "tls",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 30 -nodes -keyout key.pem -out cert.pem -subj /CN=localhost -addext basicConstraints=critical,CA:FALSE -addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=serverAuth -addext subjectAltName=DNS:localhost,IP:127.0.0.1",
    ),
    (
        "tls",
        "openssl x509 -in cert.pem -noout -ext basicConstraints,keyUsage,extendedKeyUsage,subjectAltName",
    ),
    ("tls", "cargo build --features tls --example echo_server"),
    (
        "tls",
        "target/debug/examples/echo_server --tls-cert cert.pem --tls-key key.pem &",
    ),
    (
        "tls",
        "openssl s_client -connect 127.0.0.1:7007 -servername localhost -verify_hostname localhost -CAfile cert.pem -verify_return_error </dev/null 2>&1 | grep -e '^New,' -e '^Verify return'",
    ),
    (
        "tls",
        "echo hello | socat - OPENSSL:127.0.0.1:7007,cafile=cert.pem,commonname=localhost # hello",
    ),
    (
        "tls",
        "kill -HUP $! # SIGHUP: reloaded cert.pem and key.pem for new connections",
    ),
    (
        "tls",
        "kill $! # shut down: 0 drained, 0 idle closed, 0 forced, 0 dropped unserved",
    ),
];

/// How long one command, or the wait for a line of output, may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The report of a server stopped with nothing in flight (the client's
/// connection just served may still be counted as drained).
const SHUT_DOWN: &str = "shut down: 0 drained, 0 idle closed, 0 forced, 0 dropped unserved";

// ---------------------------------------------------------------------
// The commands the pages show

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The front door stays a few screens long: what a user needs first,
/// the rest in `docs/`.
#[test]
fn the_readme_fits_in_400_lines() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 400,
        "README.md has {lines} lines: move detail to docs/"
    );
}

/// README.md and every page in `docs/`.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A command as a page shows it.
struct Shown {
    /// `FILE:LINE`, for messages.
    place: String,
    /// Its key: the text with runs of blanks made one.
    key: String,
}

/// The key of a command's text.
fn key(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every command in the ```sh, ```bash and ```console blocks of `page`
/// (in a console block, the lines after a `$ ` prompt). Comment lines and
/// blank lines are no commands; a line ending in `\` goes on on the next.
fn commands_in(page: &Path) -> Vec<Shown> {
    let name = page.strip_prefix(root()).unwrap_or(page).display();
    let text = read(page);
    let mut lines = text.lines().enumerate();
    let mut found = Vec::new();
    // The open block's fence and language.
    let mut open: Option<(String, String)> = None;
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim();
        let Some((fence, language)) = &open else {
            if trimmed.starts_with("```") {
                let fence: String = trimmed.chars().take_while(|&c| c == '`').collect();
                let info = trimmed[fence.len()..].trim();
                let language = info
                    .split([',', ' ', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                open = Some((fence, language));
            }
            continue;
        };
        if trimmed.starts_with(fence.as_str()) && trimmed.chars().all(|c| c == '`') {
            open = None;
            continue;
        }
        let command = match language.as_str() {
            "sh" | "bash" | "shell" => trimmed,
            "console" => match trimmed.strip_prefix("$ ") {
                Some(command) => command,
                None => continue,
            },
            _ => continue,
        };
        if command.is_empty() || command.starts_with('#') {
            continue;
        }
        let mut command = command.to_string();
        while let Some(head) = command.strip_suffix('\\') {
            let (_, next) = lines
                .next()
                .unwrap_or_else(|| panic!("{name}:{}: `\\` on the last line", n + 1));
            command = format!("{head} {}", next.trim());
        }
        found.push(Shown {
            place: format!("{name}:{}", n + 1),
            key: key(&command),
        });
    }
    assert!(open.is_none(), "{name}: a code block is never closed");
    found
}

fn all_shown() -> Vec<Shown> {
    pages().iter().flat_map(|page| commands_in(page)).collect()
}

/// The lines of the ```text block that comes next after `after` in
/// `page`: what the page says a command prints.
fn text_block_after(page: &str, after: &str) -> Vec<String> {
    let text = read(&root().join(page));
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("{page} does not show {after:?}"));
    let mut lines = text[start..]
        .lines()
        .skip_while(|line| line.trim() != "```text")
        .skip(1);
    let mut block = Vec::new();
    for line in lines.by_ref() {
        if line.trim() == "```" {
            return block;
        }
        block.push(line.trim().to_string());
    }
    panic!("{page}: no ```text block after {after:?}")
}

/// The commands `scenario` runs, in order, as the pages show them: a
/// scenario's test takes exactly those listed for it in [`RUN`].
#[track_caller]
fn commands<const N: usize>(scenario: &str) -> [&'static str; N] {
    let listed: Vec<&'static str> = RUN
        .iter()
        .filter(|(s, _)| *s == scenario)
        .map(|(_, command)| *command)
        .collect();
    let shown: BTreeSet<String> = all_shown().into_iter().map(|s| s.key).collect();
    for command in &listed {
        assert!(
            shown.contains(*command),
            "{scenario}: no page shows `{command}`"
        );
    }
    listed.try_into().unwrap_or_else(|listed: Vec<&str>| {
        panic!(
            "{scenario} runs {N} commands, RUN lists {}: {listed:?}",
            listed.len()
        )
    })
}

#[test]
fn every_command_is_run_or_listed() {
    let shown = all_shown();
    assert!(shown.len() > 40, "only {} commands found", shown.len());
    let run: BTreeMap<&str, &str> = RUN.iter().map(|(s, c)| (*c, *s)).collect();
    let not_run: BTreeMap<&str, &str> = NOT_RUN.iter().copied().collect();
    assert_eq!(
        not_run.len(),
        NOT_RUN.len(),
        "a command listed twice in NOT_RUN"
    );
    let mut problems = Vec::new();
    for command in &shown {
        let key = command.key.as_str();
        match (run.get(key), not_run.get(key)) {
            (Some(_), Some(_)) => problems.push(format!(
                "{}: `{key}` is both run and in NOT_RUN",
                command.place
            )),
            (None, None) => problems.push(format!(
                "{}: `{key}` is neither run (RUN) nor listed with a reason (NOT_RUN)",
                command.place
            )),
            _ => {}
        }
    }
    let keys: BTreeSet<&str> = shown.iter().map(|s| s.key.as_str()).collect();
    for command in run.keys().chain(not_run.keys()) {
        if !keys.contains(command) {
            problems.push(format!("`{command}` is listed here, but no page shows it"));
        }
    }
    for (_, reason) in NOT_RUN {
        if reason.trim().is_empty() {
            problems.push("a command in NOT_RUN has no reason".to_string());
        }
    }
    // Each scenario is a test of that name in this file.
    let source = include_str!("doc_commands.rs");
    let scenarios: BTreeSet<&str> = RUN.iter().map(|(s, _)| *s).collect();
    for scenario in scenarios {
        if !source.contains(&format!("fn {scenario}() {{")) {
            problems.push(format!("RUN names a scenario `{scenario}` with no test"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------
// A shell to run them in

/// The documented ports are fixed: one scenario at a time.
static PORTS: Mutex<()> = Mutex::new(());

/// `cargo`, as the scenarios' shell knows it: it runs or checks examples
/// already built, and nothing else. In a background job (a subshell) it
/// becomes the example, so that `$!` is the example's own process.
const CARGO: &str = r#"
cargo() {
    local verb=$1 example=
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
        --example)
            example=$2
            shift 2
            if [ "$verb" = build ] && [ ! -x "$EXAMPLES/$example" ]; then
                echo "doc_commands: example $example is not built" >&2
                return 1
            fi
            ;;
        --features) shift 2 ;;
        --) shift; break ;;
        *) echo "doc_commands: cargo $verb $1: not run by this test" >&2; return 2 ;;
        esac
    done
    case "$verb" in
    build) return 0 ;;
    run)
        if [ "$BASHPID" != "$$" ]; then exec "$EXAMPLES/$example" "$@"; fi
        "$EXAMPLES/$example" "$@"
        ;;
    *) echo "doc_commands: cargo $verb: not run by this test" >&2; return 2 ;;
    esac
}
"#;

/// A `bash` reading commands one at a time, in a scratch directory; it
/// and every process started from it are killed when it is dropped.
struct Shell {
    bash: Child,
    input: ChildStdin,
    dir: PathBuf,
    next: usize,
    _ports: MutexGuard<'static, ()>,
}

/// What a command printed, in files, read as it comes.
struct Printed {
    command: String,
    out: PathBuf,
    err: PathBuf,
}

/// A command run to its end.
struct Ran {
    status: i32,
    printed: Printed,
}

/// A command started in the background, as in a terminal of its own.
struct Job {
    pid: String,
    printed: Printed,
}

fn examples_dir() -> PathBuf {
    example("time_server").parent().unwrap().to_path_buf()
}

/// Polls `read` until it gives something, failing after `COMMAND_TIMEOUT`.
#[track_caller]
fn poll<T>(what: impl Fn() -> String, mut read: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Some(value) = read() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "after {COMMAND_TIMEOUT:?}: {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The text of `command` without its trailing `# comment`.
fn strip_comment(command: &str) -> &str {
    let (mut single, mut double, mut previous) = (false, false, ' ');
    for (i, c) in command.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => {
                return command[..i].trim_end();
            }
            _ => {}
        }
        previous = c;
    }
    command.trim_end()
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

impl Shell {
    fn new(scenario: &str) -> Shell {
        let ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(format!(
            "socketserver-doc-commands-{}-{scenario}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("target/debug")).unwrap();
        std::os::unix::fs::symlink(examples_dir(), dir.join("target/debug/examples")).unwrap();
        std::os::unix::fs::symlink(root().join("deploy"), dir.join("deploy")).unwrap();
        let path = std::env::var("PATH").unwrap_or_default();
        let mut bash = Command::new("bash")
            .args(["--noprofile", "--norc", "-s"])
            .current_dir(&dir)
            // Programs such as haproxy live in sbin, which not every PATH has.
            .env("PATH", format!("{path}:/usr/sbin:/sbin"))
            .env("EXAMPLES", examples_dir())
            .env_remove("RUST_LOG")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::piped())
            .stdout(fs::File::create(dir.join("shell.out")).unwrap())
            .stderr(fs::File::create(dir.join("shell.err")).unwrap())
            .process_group(0)
            .spawn()
            .expect("bash");
        let input = bash.stdin.take().unwrap();
        let mut shell = Shell {
            bash,
            input,
            dir,
            next: 0,
            _ports: ports,
        };
        shell.send(CARGO);
        shell
    }

    fn send(&mut self, script: &str) {
        self.input.write_all(script.as_bytes()).unwrap();
        self.input.flush().unwrap();
    }

    fn printed(&mut self, command: &str) -> (Printed, PathBuf) {
        self.next += 1;
        let base = self.dir.join(format!("command-{}", self.next));
        let printed = Printed {
            command: command.to_string(),
            out: base.with_extension("out"),
            err: base.with_extension("err"),
        };
        (printed, base.with_extension("done"))
    }

    /// Runs `command` to its end, its standard input empty. A command
    /// that ends in `&` returns at once, its job's output still coming.
    #[track_caller]
    fn run(&mut self, command: &str) -> Ran {
        let (printed, done) = self.printed(command);
        self.send(&format!(
            "{{ {}\n}} < /dev/null > {} 2> {}; echo $? > {}.tmp && mv {3}.tmp {3}\n",
            strip_comment(command),
            quoted(&printed.out),
            quoted(&printed.err),
            quoted(&done),
        ));
        let status = poll(
            || format!("`{command}` has not ended"),
            || fs::read_to_string(&done).ok(),
        );
        Ran {
            status: status.trim().parse().unwrap(),
            printed,
        }
    }

    /// Starts `command`, which the page runs in a terminal of its own, in
    /// the background: its standard input empty, `Job::pid` its process.
    #[track_caller]
    fn start(&mut self, command: &str) -> Job {
        let (printed, done) = self.printed(command);
        self.send(&format!(
            "{} < /dev/null > {} 2> {} &\necho $! > {}.tmp && mv {3}.tmp {3}\n",
            strip_comment(command),
            quoted(&printed.out),
            quoted(&printed.err),
            quoted(&done),
        ));
        let pid = poll(
            || format!("`{command}` has not started"),
            || fs::read_to_string(&done).ok(),
        );
        Job {
            pid: pid.trim().to_string(),
            printed,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // The shell leads its process group: this ends it and everything
        // it started, servers and clients alike.
        let group = format!("-{}", self.bash.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.bash.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Printed {
    fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits for a line of standard output that starts with `start`, and
    /// returns it.
    #[track_caller]
    fn wait_line(&self, start: &str) -> String {
        poll(
            || {
                format!(
                    "`{}` printed no line starting {start:?}; stdout:\n{}stderr:\n{}",
                    self.command,
                    self.stdout(),
                    self.stderr()
                )
            },
            || {
                self.stdout()
                    .lines()
                    .find(|line| line.starts_with(start))
                    .map(str::to_string)
            },
        )
    }

    /// Waits for a line of standard error that contains `needle`.
    #[track_caller]
    fn wait_err_line(&self, needle: &str) -> String {
        poll(
            || {
                format!(
                    "`{}` printed no line with {needle:?} to stderr:\n{}",
                    self.command,
                    self.stderr()
                )
            },
            || {
                self.stderr()
                    .lines()
                    .find(|line| line.contains(needle))
                    .map(str::to_string)
            },
        )
    }

    /// Waits for the shutdown report, and checks it is a clean one.
    #[track_caller]
    fn wait_shut_down(&self) {
        let report = self.wait_line("shut down: ");
        assert_clean_report(&report);
    }
}

/// `shut down: 0 drained, ...`, where the connection the test had served
/// just before may still count as drained.
#[track_caller]
fn assert_clean_report(report: &str) {
    let clean = [SHUT_DOWN.to_string(), SHUT_DOWN.replacen('0', "1", 1)];
    assert!(clean.contains(&report.to_string()), "{report:?}");
}

impl Ran {
    /// Asserts the command succeeded, and returns it.
    #[track_caller]
    fn ok(self) -> Ran {
        assert_eq!(
            self.status,
            0,
            "`{}` failed; stdout:\n{}stderr:\n{}",
            self.printed.command,
            self.printed.stdout(),
            self.printed.stderr()
        );
        self
    }

    fn stdout(&self) -> String {
        self.printed.stdout()
    }
}

impl Job {
    /// Sends `signal` (`INT`: Ctrl-C; `TERM`: `kill`) to the job.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid.clone()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.pid);
    }
}

/// Whether `program` is installed; if not, says the scenario is skipped
/// (or fails it, under `SOCKETSERVER_TEST_REQUIRE_ALL`).
fn have(program: &str, package: &str) -> bool {
    outside_program(program, package).is_some()
}

/// How many sockets listen on TCP port `port` (IPv4 and IPv6).
fn tcp_listeners(port: u16) -> usize {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .map(|line| line.split_whitespace().map(str::to_string).collect())
                .collect::<Vec<Vec<String>>>()
        })
        // sl, local_address, rem_address, st: 0A is LISTEN.
        .filter(|fields| fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "0A")
        .count()
}

/// Runs `command` to its end, its output small enough for a pipe to
/// hold; it is killed, and the test fails, past `COMMAND_TIMEOUT`.
#[track_caller]
fn output_within(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Whether the examples were built with the `tls` feature: without it
/// their TLS flags say to build with it.
fn examples_have_tls() -> bool {
    let out = output_within(
        Command::new(example("echo_server"))
            .args(["--bind", "127.0.0.1:0"])
            .args(["--tls-cert", "/nonexistent/cert.pem"])
            .args(["--tls-key", "/nonexistent/key.pem"]),
    );
    assert!(!out.status.success(), "it served without its certificate");
    !String::from_utf8_lossy(&out.stderr).contains("--features tls")
}

// ---------------------------------------------------------------------
// The scenarios

/// README's "Try it": the time server, a client from another terminal,
/// and Ctrl-C, which prints the shutdown report.
#[test]
fn try_it() {
    let [serve, client] = commands("try_it");
    if !have("nc", "netcat-openbsd") {
        return;
    }
    let mut shell = Shell::new("try_it");
    let server = shell.start(serve);
    server
        .printed
        .wait_line("listening on 127.0.0.1:6789 (tcp)");
    assert_seed_time(shell.run(client).ok().stdout().as_bytes());
    server.signal("INT");
    server.printed.wait_shut_down();
}

/// The time server on `[::]`, which takes IPv4 clients too, and over UDP.
#[test]
fn ipv6_and_udp() {
    let [stream, client, datagram, datagram_client] = commands("ipv6_and_udp");
    if !have("nc", "netcat-openbsd") {
        return;
    }
    let mut shell = Shell::new("ipv6_and_udp");
    let server = shell.start(stream);
    server.printed.wait_line("listening on [::]:6789 (tcp)");
    assert_seed_time(shell.run(client).ok().stdout().as_bytes());
    // "also takes IPv4"
    let v4 = socketserver::Addr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 6789)));
    assert_seed_time(&tcp_exchange(&v4, None));
    server.signal("INT");
    server.printed.wait_shut_down();

    let server = shell.start(datagram);
    server.printed.wait_line("listening on [::]:6789 (udp)");
    assert_seed_time(shell.run(datagram_client).ok().stdout().as_bytes());
    server.signal("INT");
    server.printed.wait_shut_down();
}

/// `--metrics`: the counters over HTTP, and the one line the README's
/// `grep` picks out.
#[test]
fn metrics() {
    let [serve, scrape] = commands("metrics");
    if !have("curl", "curl") {
        return;
    }
    let mut shell = Shell::new("metrics");
    let server = shell.start(serve);
    server
        .printed
        .wait_line("listening on 127.0.0.1:7007 (tcp)");
    server
        .printed
        .wait_line("metrics on http://127.0.0.1:9100/metrics");
    assert_eq!(
        shell.run(scrape).ok().stdout(),
        "echo_server_accepted_total 0\n"
    );
    server.signal("TERM");
    server.printed.wait_shut_down();
}

/// `RUST_LOG=debug`: the library's log lines, as docs/deploy.md shows
/// them (the number of workers is the machine's CPUs).
/// Upgrade in place on SIGUSR2: the new process serves the socket, the
/// old one drains and exits, and the new one stops as any other.
#[test]
fn upgrade() {
    let [build, serve, upgrade, echo, stop] = commands("upgrade");
    if !have("nc", "netcat-openbsd") {
        return;
    }
    let mut shell = Shell::new("upgrade");
    shell.run(build).ok();
    let server = shell.run(serve).ok();
    server
        .printed
        .wait_line("listening on 127.0.0.1:7007 (tcp)");
    let count = |what: &str| server.printed.stdout().matches(what).count();
    shell.run(upgrade).ok();
    // Both processes write where the first was started.
    poll(
        || server.printed.stdout(),
        || {
            (count("listening on 127.0.0.1:7007 (tcp)") == 2 && count("shut down: ") == 1)
                .then_some(())
        },
    );
    assert_eq!(shell.run(echo).ok().stdout(), "hi\n");
    shell.run(stop).ok();
    poll(
        || server.printed.stdout(),
        || (count("shut down: ") == 2).then_some(()),
    );
}

#[test]
fn log_lines() {
    let [serve] = commands("log_lines");
    let mut shell = Shell::new("log_lines");
    let server = shell.start(serve);
    server
        .printed
        .wait_line("listening on 127.0.0.1:6789 (tcp)");
    server.signal("INT");
    server.printed.wait_shut_down();
    server.printed.wait_err_line("stopped serving");
    let logged: Vec<String> = server.printed.stderr().lines().map(any_workers).collect();
    let shown = text_block_after("docs/deploy.md", serve.split(" #").next().unwrap());
    assert_eq!(shown.len(), 3, "{shown:?}");
    for line in shown {
        assert!(
            logged.contains(&any_workers(&line)),
            "docs/deploy.md shows {line:?}; logged:\n{}",
            logged.join("\n")
        );
    }
}

/// `with 2 workers` as `with N workers`.
fn any_workers(line: &str) -> String {
    let Some(end) = line.find(" workers") else {
        return line.to_string();
    };
    let start = line[..end].rfind(' ').map_or(0, |space| space + 1);
    format!("{}N{}", &line[..start], &line[end..])
}

/// `--unix PATH`: the same server on a Unix socket, its file removed when
/// it stops.
#[test]
fn unix_socket() {
    let [serve, client] = commands("unix_socket");
    if !have("nc", "netcat-openbsd") {
        return;
    }
    let mut shell = Shell::new("unix_socket");
    let server = shell.start(serve);
    server
        .printed
        .wait_line("listening on unix:time.sock (stream)");
    assert_seed_time(shell.run(client).ok().stdout().as_bytes());
    server.signal("INT");
    server.printed.wait_shut_down();
    let socket = shell.path("time.sock");
    poll(
        || format!("{} is still there", socket.display()),
        || (!socket.exists()).then_some(()),
    );
}

/// `systemd-socket-activate` holds the socket and starts the server on the
/// first connection, and on the first datagram.
#[test]
fn socket_activation() {
    let [build, stream, client, datagram, datagram_client] = commands("socket_activation");
    if !have("systemd-socket-activate", "systemd") || !have("nc", "netcat-openbsd") {
        return;
    }
    let mut shell = Shell::new("socket_activation");
    shell.run(build).ok();
    let tcp = shell.start(stream);
    tcp.printed.wait_err_line("Listening on 127.0.0.1:6789");
    assert!(
        tcp.printed.stdout().is_empty(),
        "started before a client came"
    );
    assert_seed_time(shell.run(client).ok().stdout().as_bytes());
    tcp.printed.wait_line("listening on 127.0.0.1:6789 (tcp)");

    let udp = shell.start(datagram);
    udp.printed.wait_err_line("Listening on 127.0.0.1:6789");
    assert!(
        udp.printed.stdout().is_empty(),
        "started before a datagram came"
    );
    assert_seed_time(shell.run(datagram_client).ok().stdout().as_bytes());
    udp.printed.wait_line("listening on 127.0.0.1:6789 (udp)");
    for server in [tcp, udp] {
        server.signal("INT");
        server.printed.wait_shut_down();
    }
}

/// `--reuse-port`: two processes on one port, and two different servers
/// on another whose replies come mixed; `kill $(jobs -p)` stops all four.
#[test]
fn reuse_port() {
    let [build, first, second, listeners, time, greeting, clients, kill_all] =
        commands("reuse_port");
    if !have("nc", "netcat-openbsd") || !have("ss", "iproute2") {
        return;
    }
    let mut shell = Shell::new("reuse_port");
    shell.run(build).ok();
    let mut servers = Vec::new();
    for command in [first, second] {
        let server = shell.run(command).ok();
        server
            .printed
            .wait_line("listening on 127.0.0.1:6789 (tcp)");
        servers.push(server);
    }
    let table = shell.run(listeners).ok().stdout();
    let listening: Vec<&str> = table.lines().filter(|l| l.starts_with("LISTEN")).collect();
    assert_eq!(listening.len(), 2, "{table}");
    // One per process: each line names its own.
    let pids: BTreeSet<&str> = listening
        .iter()
        .filter_map(|line| line.split("pid=").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .collect();
    assert_eq!(pids.len(), 2, "{table}");

    for command in [time, greeting] {
        let server = shell.run(command).ok();
        server
            .printed
            .wait_line("listening on 127.0.0.1:6790 (tcp)");
        servers.push(server);
    }
    // A mix of times and `connected`, in no fixed order: eight clients
    // all hashed to one server (one time in 128) are tried again.
    let mut mixed = false;
    for _ in 0..3 {
        let replies = shell.run(clients).ok().stdout();
        let replies: Vec<&str> = replies.lines().collect();
        assert_eq!(replies.len(), 8, "{replies:?}");
        let greetings = replies.iter().filter(|r| **r == "connected").count();
        for reply in replies.iter().filter(|r| **r != "connected") {
            assert_seed_time(reply.as_bytes());
        }
        if greetings > 0 && greetings < 8 {
            mixed = true;
            break;
        }
    }
    assert!(mixed, "every client reached the same server, three times");

    shell.run(kill_all).ok();
    for server in servers {
        server.printed.wait_shut_down();
    }
}

/// HAProxy in front of three `whoami_server`s with the PROXY protocol:
/// the reply is the client's own address, as HAProxy's log shows it.
#[test]
fn haproxy() {
    let [build, first, second, third, check, proxy, client, kill_all] = commands("haproxy");
    if !have("haproxy", "haproxy") || !have("nc", "netcat-openbsd") {
        return;
    }
    let mut shell = Shell::new("haproxy");
    shell.run(build).ok();
    let mut servers = Vec::new();
    for (command, port) in [(first, 7071), (second, 7072), (third, 7073)] {
        let server = shell.run(command).ok();
        server
            .printed
            .wait_line(&format!("listening on 127.0.0.1:{port} (tcp)"));
        servers.push(server);
    }
    let checked = shell.run(check).ok();
    let said = checked.stdout() + &checked.printed.stderr();
    assert!(said.contains("Configuration file is valid"), "{said}");
    let haproxy = shell.run(proxy).ok();
    poll(
        || {
            format!(
                "haproxy does not listen on 8080:\n{}",
                haproxy.printed.stderr()
            )
        },
        || (tcp_listeners(8080) > 0).then_some(()),
    );
    let reply = shell.run(client).ok().stdout();
    let (ip, port) = reply
        .trim_end()
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("not an address: {reply:?}"));
    assert_eq!(ip, "127.0.0.1", "{reply:?}");
    port.parse::<u16>()
        .unwrap_or_else(|e| panic!("{reply:?}: {e}"));
    // nc's own address and port: HAProxy logs its client so.
    haproxy
        .printed
        .wait_line(&format!("{} [", reply.trim_end()));
    shell.run(kill_all).ok();
    for server in servers {
        server.printed.wait_shut_down();
    }
}

/// `kv_server` answers `redis-cli` as redis-server would.
#[test]
fn kv_server() {
    let [serve, set, get] = commands("kv_server");
    if !have("redis-cli", "redis-tools") {
        return;
    }
    let mut shell = Shell::new("kv_server");
    let server = shell.start(serve);
    server
        .printed
        .wait_line("listening on 127.0.0.1:6380 (tcp)");
    assert_eq!(shell.run(set).ok().stdout(), "OK\n");
    assert_eq!(shell.run(get).ok().stdout(), "v\n");
    server.signal("TERM");
    server.printed.wait_shut_down();
}

/// `inetd`: the six services on 127.0.0.1, TCP and UDP, each on its RFC
/// port plus 10000.
#[test]
fn inetd() {
    let [serve] = commands("inetd");
    let mut shell = Shell::new("inetd");
    let server = shell.start(serve);
    let mut expected = Vec::new();
    for port in [10007, 10009, 10013, 10017, 10019, 10037] {
        for transport in ["tcp", "udp"] {
            expected.push(format!("listening on 127.0.0.1:{port} ({transport})"));
        }
    }
    for line in &expected {
        server.printed.wait_line(line);
    }
    assert_eq!(server.printed.stdout().lines().count(), expected.len());
    let echo = socketserver::Addr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 10007)));
    assert_eq!(tcp_exchange(&echo, Some(b"hi\n")), b"hi\n");
    server.signal("INT");
    for line in &expected {
        let addr = line.strip_prefix("listening on ").unwrap();
        let report = server.printed.wait_line(&format!("shut down {addr}: "));
        assert_clean_report(&report.replace(&format!(" {addr}"), ""));
    }
}

/// docs/tls.md: an end-entity certificate for `localhost`, which the echo
/// example serves and clients verify; SIGHUP reloads it.
#[test]
fn tls() {
    let [make, inspect, build, serve, handshake, echo, hangup, stop] = commands("tls");
    if !have("openssl", "openssl") || !have("socat", "socat") {
        return;
    }
    if !examples_have_tls() {
        let why = "the examples were built without the `tls` feature (cargo build --examples --all-features)";
        assert!(
            !cfg!(feature = "tls") || std::env::var_os(REQUIRE_ALL).is_none(),
            "{why}"
        );
        // Past the test harness's capture, as common::outside_program says it.
        let _ = writeln!(std::io::stderr(), "skipped: {why}");
        return;
    }
    let mut shell = Shell::new("tls");
    shell.run(make).ok();

    let shown = text_block_after("docs/tls.md", "openssl x509 -in cert.pem");
    let printed = shell.run(inspect).ok().stdout();
    let printed: Vec<&str> = printed.lines().map(str::trim).collect();
    assert_eq!(printed, shown);
    // The whole certificate: an end entity for a TLS server.
    let text = output_within(
        Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(shell.path("cert.pem")),
    );
    let text = String::from_utf8_lossy(&text.stdout);
    for wanted in [
        "CA:FALSE",
        "DNS:localhost, IP Address:127.0.0.1",
        "Digital Signature",
        "TLS Web Server Authentication",
    ] {
        assert!(text.contains(wanted), "no {wanted:?} in\n{text}");
    }
    assert!(!text.contains("CA:TRUE"), "{text}");

    shell.run(build).ok();
    let server = shell.run(serve).ok();
    server
        .printed
        .wait_line("listening on 127.0.0.1:7007 (tcp)");
    let summary = shell.run(handshake).ok().stdout();
    let summary: Vec<&str> = summary.lines().collect();
    let shown = text_block_after("docs/tls.md", "`openssl s_client` prints");
    assert_eq!(summary, shown);
    assert_eq!(shell.run(echo).ok().stdout(), "hello\n");
    shell.run(hangup).ok();
    server
        .printed
        .wait_line("SIGHUP: reloaded cert.pem and key.pem for new connections");
    // The reloaded certificate serves the next client.
    assert_eq!(shell.run(echo).ok().stdout(), "hello\n");
    shell.run(stop).ok();
    server.printed.wait_shut_down();
}
