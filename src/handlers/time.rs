//! `Time`: the RFC 868 time protocol, what `rdate` reads.

use std::io;

use crate::{Connection, Handler};

/// Seconds from 1900-01-01 00:00 UTC, RFC 868's epoch, to the Unix epoch.
const SECONDS_1900_TO_1970: i64 = 2_208_988_800;

/// Sends the time as 4 bytes: seconds since 1900-01-01 00:00 UTC, as a
/// big-endian 32-bit number (RFC 868). Port 37.
///
/// RFC 868 over TCP: "The server listens for a connection on port 37.
/// When the connection is established, the server returns a 32-bit time
/// value and closes the connection." Over UDP: "When a datagram arrives,
/// the server returns a datagram containing the 32-bit time value." The
/// datagram may be empty, as `rdate -u` sends it; any bytes in it are
/// ignored.
///
/// "The time is the number of seconds since 00:00 (midnight) 1 January
/// 1900 GMT [...]; this base will serve until the year 2036." The count
/// is taken modulo 2³², so it wraps to 0 at 2036-02-07 06:28:16 UTC and
/// goes on from there, which is what clients aware of the wrap (rdate, NTP
/// implementations) expect: see [`Time::at`].
///
/// The 4-byte reply is within any [`Amplification`](super::Amplification)
/// floor, so it needs no limit of its own. Leap seconds are not counted,
/// as the system clock does not count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Time;

impl Time {
    /// The RFC 868 time value for `unix_seconds` (seconds since
    /// 1970-01-01 00:00 UTC): `(unix_seconds + 2,208,988,800) mod 2³²`.
    ///
    /// ```
    /// use socketserver::handlers::Time;
    ///
    /// assert_eq!(Time::at(0), 2_208_988_800);             // 1970-01-01
    /// assert_eq!(Time::at(2_085_978_495), u32::MAX);      // 2036-02-07 06:28:15
    /// assert_eq!(Time::at(2_085_978_496), 0);             // the wrap
    /// ```
    pub fn at(unix_seconds: i64) -> u32 {
        // rem_euclid keeps times before 1900 (or far past 2036) in range
        // instead of overflowing; the truncation is the protocol's wrap.
        (unix_seconds + SECONDS_1900_TO_1970).rem_euclid(1 << 32) as u32
    }

    /// The time value for now, as sent: 4 bytes, big-endian.
    pub fn now() -> [u8; 4] {
        Self::at(chrono::Utc::now().timestamp()).to_be_bytes()
    }
}

impl Handler for Time {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        super::reply_once(conn, &Self::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(date: &str) -> i64 {
        let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
        day.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp()
    }

    #[test]
    fn rfc_868_examples() {
        assert_eq!(Time::at(unix("1900-01-01")), 0);
        assert_eq!(Time::at(unix("1900-01-01") + 1), 1);
        assert_eq!(Time::at(unix("1970-01-01")), 2_208_988_800);
        assert_eq!(Time::at(unix("1976-01-01")), 2_398_291_200);
        assert_eq!(Time::at(unix("1980-01-01")), 2_524_521_600);
        assert_eq!(Time::at(unix("1983-05-01")), 2_629_584_000);
        // "-1,297,728,000 corresponds to 00:00 17 Nov 1858 GMT", modulo 2^32.
        assert_eq!(
            Time::at(unix("1858-11-17")),
            (-1_297_728_000i64).rem_euclid(1 << 32) as u32
        );
    }

    #[test]
    fn the_count_wraps_in_2036() {
        let wrap = (1i64 << 32) - SECONDS_1900_TO_1970;
        let at = chrono::DateTime::from_timestamp(wrap, 0).unwrap();
        assert_eq!(at.to_rfc3339(), "2036-02-07T06:28:16+00:00");
        assert_eq!(Time::at(wrap - 1), u32::MAX);
        assert_eq!(Time::at(wrap), 0);
        assert_eq!(Time::at(wrap + 86_400), 86_400);
        // Still a clean modulus a whole era later.
        assert_eq!(Time::at(wrap + (1 << 32) + 5), 5);
    }

    #[test]
    fn now_is_big_endian() {
        let sent = u32::from_be_bytes(Time::now());
        let expected = Time::at(chrono::Utc::now().timestamp());
        assert!(expected.wrapping_sub(sent) <= 2, "{sent} vs {expected}");
    }
}
