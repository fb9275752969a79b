//! The system's ephemeral port range: the ports it gives to sockets that
//! did not bind one (clients, in practice).

use std::ops::RangeInclusive;

/// Linux's default `net.ipv4.ip_local_port_range`.
const LINUX_DEFAULT: RangeInclusive<u16> = 32768..=60999;

/// The ephemeral range as this system sets it (Linux:
/// `/proc/sys/net/ipv4/ip_local_port_range`), or Linux's default when it
/// cannot be read.
pub(crate) fn ephemeral_range() -> RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse(&text))
        .unwrap_or(LINUX_DEFAULT)
}

fn parse(text: &str) -> Option<RangeInclusive<u16>> {
    let mut ports = text.split_whitespace().map(|p| p.parse::<u16>());
    let (low, high) = (ports.next()?.ok()?, ports.next()?.ok()?);
    (low <= high).then_some(low..=high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_parsed_as_the_kernel_writes_it() {
        assert_eq!(parse("32768\t60999\n"), Some(32768..=60999));
        assert_eq!(parse("1024 65535"), Some(1024..=65535));
        assert_eq!(parse("60999 32768"), None);
        assert_eq!(parse("junk"), None);
        assert!(ephemeral_range().start() >= &1);
    }
}
