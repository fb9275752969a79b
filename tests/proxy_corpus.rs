//! The PROXY protocol decoder against its seed corpus (`tests/proxy_corpus/`)
//! and against random, generated and mutated inputs derived from it.
//!
//! For every input: no panic; `parse` and `read_header` agree; a decoded
//! header's length is within the input and `read_header` reads exactly that
//! many bytes; an incomplete header is never asked for bytes past its end.
//! The inputs come from a fixed-seed xorshift generator, so a failure repeats;
//! `PROXY_FUZZ_ITERATIONS` and `PROXY_FUZZ_SEED` change the run.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use common::proxy_check::{check, check_prefixes, describe, describe_header, shown};
use socketserver::proxy::{parse, read_header, ProxyHeader, V2_MAX_PAYLOAD};
use socketserver::Transport;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/proxy_corpus");
const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The corpus files with what parsing each must give, from `expected.txt`.
fn corpus() -> Vec<(String, Vec<u8>, String)> {
    let manifest = fs::read_to_string(Path::new(CORPUS).join("expected.txt")).unwrap();
    let entries: Vec<_> = manifest
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (name, expected) = line.split_once('\t').expect("file<TAB>expected");
            let bytes = fs::read(Path::new(CORPUS).join(name)).unwrap();
            (name.to_string(), bytes, expected.to_string())
        })
        .collect();
    for dir in ["valid", "invalid"] {
        for file in fs::read_dir(Path::new(CORPUS).join(dir)).unwrap() {
            let name = format!("{dir}/{}", file.unwrap().file_name().to_string_lossy());
            assert!(
                entries.iter().any(|(n, ..)| *n == name),
                "{name} is not in expected.txt"
            );
        }
    }
    entries
}

#[test]
fn corpus_parses_as_expected() {
    let corpus = corpus();
    assert!(corpus.len() >= 50, "only {} corpus files", corpus.len());
    for (name, bytes, expected) in &corpus {
        let result = parse(bytes);
        assert_eq!(&describe(&result), expected, "{name}");
        if let Ok((_, consumed)) = result {
            assert_eq!(
                consumed,
                bytes.len(),
                "{name}: a valid file is one whole header"
            );
            check_prefixes(bytes);
        }
        check(bytes);
    }
}

#[test]
fn corpus_headers_leave_the_data_after_them() {
    for (name, bytes, expected) in corpus() {
        if !name.starts_with("valid/") {
            continue;
        }
        let stream = [&bytes[..], b"PROXY UNKNOWN\r\n", SIGNATURE].concat();
        let mut cursor = Cursor::new(&stream[..]);
        let header = read_header(&mut cursor).unwrap();
        assert_eq!(describe_header(&header), expected, "{name}");
        assert_eq!(cursor.position(), bytes.len() as u64, "{name}");
        // The next header in the same stream is read as such.
        assert_eq!(read_header(&mut cursor).unwrap(), ProxyHeader::Unknown);
    }
}

/// xorshift64*: small, fast, and the same sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A random address, often an edge value.
fn random_v4(rng: &mut Rng) -> Ipv4Addr {
    match rng.below(4) {
        0 => Ipv4Addr::UNSPECIFIED,
        1 => Ipv4Addr::BROADCAST,
        _ => Ipv4Addr::from(rng.next() as u32),
    }
}

fn random_v6(rng: &mut Rng) -> Ipv6Addr {
    match rng.below(5) {
        0 => Ipv6Addr::UNSPECIFIED,
        1 => Ipv6Addr::from([0xffff; 8]),
        2 => random_v4(rng).to_ipv6_mapped(),
        3 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, rng.next() as u16),
        _ => Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next())),
    }
}

fn random_port(rng: &mut Rng) -> u16 {
    let any = rng.next() as u16;
    *rng.pick(&[0, 1, 9, 10, 80, 443, 65535, any])
}

/// TLVs that fit in `room` bytes.
fn random_tlvs(rng: &mut Rng, room: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while rng.chance(2) {
        let most = if rng.chance(10) { 600 } else { 40 };
        let len = rng.below(most);
        if out.len() + 3 + len > room {
            break;
        }
        out.push(*rng.pick(&[0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x30, 0xe0, 0xff]));
        out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        out.extend(rng.bytes(len));
    }
    out
}

fn v2_header(command: u8, family_transport: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20 | command, family_transport]);
    out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A random valid header and what it must decode to.
fn random_header(rng: &mut Rng) -> (Vec<u8>, String) {
    let source_port = random_port(rng);
    let destination_port = random_port(rng);
    let proxied = |s: SocketAddr, d: SocketAddr, t: Transport| format!("proxied {s} {d} {t}");
    match rng.below(7) {
        0 | 1 => {
            let (family, s, d): (_, IpAddr, IpAddr) = if rng.chance(2) {
                ("TCP4", random_v4(rng).into(), random_v4(rng).into())
            } else {
                ("TCP6", random_v6(rng).into(), random_v6(rng).into())
            };
            let line = format!("PROXY {family} {s} {d} {source_port} {destination_port}\r\n");
            let expected = proxied(
                (s, source_port).into(),
                (d, destination_port).into(),
                Transport::Stream,
            );
            (line.into_bytes(), expected)
        }
        2 => {
            // UNKNOWN, with printable junk up to the longest line.
            let junk_len = rng.below(107 - 15 + 1);
            let junk: String = (0..junk_len)
                .map(|_| char::from(b' ' + (rng.byte() % 95)))
                .collect();
            let line = if junk.is_empty() {
                "PROXY UNKNOWN\r\n".to_string()
            } else {
                format!("PROXY UNKNOWN {}\r\n", &junk[..junk.len() - 1])
            };
            (line.into_bytes(), "unknown".into())
        }
        3 | 4 => {
            let datagram = rng.chance(2);
            let transport = if datagram {
                Transport::Datagram
            } else {
                Transport::Stream
            };
            let (family, s, d): (u8, IpAddr, IpAddr) = if rng.chance(2) {
                (0x10, random_v4(rng).into(), random_v4(rng).into())
            } else {
                (0x20, random_v6(rng).into(), random_v6(rng).into())
            };
            let octets = |ip: IpAddr| match ip {
                IpAddr::V4(ip) => ip.octets().to_vec(),
                IpAddr::V6(ip) => ip.octets().to_vec(),
            };
            let mut payload = [octets(s), octets(d)].concat();
            payload.extend_from_slice(&source_port.to_be_bytes());
            payload.extend_from_slice(&destination_port.to_be_bytes());
            let room = V2_MAX_PAYLOAD - payload.len();
            payload.extend(random_tlvs(rng, room));
            let header = v2_header(1, family | if datagram { 2 } else { 1 }, &payload);
            let (s, d) = ((s, source_port).into(), (d, destination_port).into());
            (header, proxied(s, d, transport))
        }
        5 => {
            // LOCAL: any family, any block.
            let len = rng.below(60);
            let family_transport = *rng.pick(&[0x00, 0x11, 0x12, 0x21, 0x22, 0x31]);
            (
                v2_header(0, family_transport, &rng.bytes(len)),
                "local".into(),
            )
        }
        _ => {
            // Unspecified family or transport, or a Unix socket.
            let (family_transport, len) = *rng.pick(&[
                (0x00, 0),
                (0x00, 12),
                (0x01, 7),
                (0x10, 12),
                (0x20, 3),
                (0x31, 216),
                (0x32, 216),
            ]);
            let mut payload = rng.bytes(len);
            if family_transport >> 4 == 3 {
                payload.extend(random_tlvs(rng, V2_MAX_PAYLOAD - len));
            }
            (v2_header(1, family_transport, &payload), "unknown".into())
        }
    }
}

/// Changes `input` in one of several ways, most of them near the format's
/// edges.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, donors: &[Vec<u8>]) {
    const INTERESTING: &[u8] = b"\r\n \0:.0129PfF\xff\x20\x21\x11";
    let at = |rng: &mut Rng, input: &Vec<u8>| rng.below(input.len() + 1);
    match rng.below(10) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] = if rng.chance(2) {
                rng.byte()
            } else {
                *rng.pick(INTERESTING)
            };
        }
        2 => {
            let i = at(rng, input);
            input.insert(i, *rng.pick(INTERESTING));
        }
        3 if !input.is_empty() => {
            let i = rng.below(input.len());
            input.remove(i);
        }
        4 => {
            let i = at(rng, input);
            input.truncate(i);
        }
        5 if !input.is_empty() => {
            // Repeat a chunk in place.
            let start = rng.below(input.len());
            let end = start + rng.below((input.len() - start).min(32)) + 1;
            let chunk = input[start..end].to_vec();
            let i = at(rng, input);
            input.splice(i..i, chunk);
        }
        6 => {
            // Splice: this input's start, another's end.
            let donor = rng.pick(donors);
            let cut = at(rng, input);
            input.truncate(cut);
            let from = rng.below(donor.len() + 1);
            input.extend_from_slice(&donor[from..]);
        }
        7 if input.len() >= 16 && input.starts_with(SIGNATURE) => {
            // A version 2 length near the edges.
            let real = input.len() - 16;
            let any = rng.below(0x10000);
            let len = *rng.pick(&[
                0,
                1,
                11,
                12,
                13,
                35,
                36,
                215,
                216,
                real.saturating_sub(1),
                real + 1,
                V2_MAX_PAYLOAD,
                V2_MAX_PAYLOAD + 1,
                0xffff,
                any,
            ]);
            let len = u16::try_from(len.min(0xffff)).unwrap();
            input[14..16].copy_from_slice(&len.to_be_bytes());
        }
        8 if input.len() >= 14 && input.starts_with(SIGNATURE) => {
            // Version/command or family/transport.
            let i = 12 + rng.below(2);
            input[i] = rng.byte();
        }
        _ => {
            let n = rng.below(16);
            input.extend(rng.bytes(n));
        }
    }
}

#[test]
fn random_and_mutated_inputs_never_break_the_decoder() {
    let iterations: usize = std::env::var("PROXY_FUZZ_ITERATIONS")
        .map(|v| v.parse().expect("PROXY_FUZZ_ITERATIONS: a number"))
        .unwrap_or(200_000);
    let seed: u64 = std::env::var("PROXY_FUZZ_SEED")
        .map(|v| v.parse().expect("PROXY_FUZZ_SEED: a number"))
        .unwrap_or(0x5eed_c0de_0000_0001);
    let mut rng = Rng(seed | 1);
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, bytes, _)| bytes).collect();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut generated = 0;

    for _ in 0..iterations {
        let mut input = match rng.below(10) {
            // A valid header: it must decode to exactly what was encoded.
            0 | 1 => {
                let (header, expected) = random_header(&mut rng);
                let got = check(&header);
                assert_eq!(got, expected, "input: {}", shown(&header));
                if rng.chance(16) {
                    check_prefixes(&header);
                }
                generated += 1;
                if rng.chance(2) {
                    *outcomes
                        .entry(got.split(' ').next().unwrap().into())
                        .or_default() += 1;
                    continue;
                }
                header
            }
            2 => {
                let n = rng.below(64);
                rng.bytes(n)
            }
            3 => {
                let prefix: &[u8] = if rng.chance(2) { b"PROXY " } else { SIGNATURE };
                let n = rng.below(120);
                [prefix, &rng.bytes(n)].concat()
            }
            _ => rng.pick(&seeds).clone(),
        };
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut input, &seeds);
        }
        let got = check(&input);
        *outcomes
            .entry(got.split(' ').next().unwrap().into())
            .or_default() += 1;
    }

    println!(
        "{iterations} inputs ({generated} generated valid headers), seed {seed}: {outcomes:?}"
    );
    for outcome in [
        "proxied",
        "local",
        "unknown",
        "not-proxy",
        "unsupported-version",
        "too-long",
        "malformed",
        "incomplete",
    ] {
        let count = outcomes.get(outcome).copied().unwrap_or(0);
        assert!(
            count * 1000 >= iterations,
            "only {count} inputs gave {outcome}: the inputs miss part of the decoder"
        );
    }
}
