//! `Daytime`: the local time as text (RFC 867).

use std::io::{self, Write};
use std::sync::Mutex;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Local};

use super::Amplification;
use crate::{Connection, Error, Handler};

/// Writes the current local time as text and closes: over TCP on connect,
/// over UDP in reply to any datagram (RFC 867, port 13).
///
/// RFC 867 over TCP: "Once a connection is established the current date
/// and time is sent out the connection as a ascii character string (and
/// any data received is thrown away). The service closes the connection
/// after sending the quote." Over UDP: "When a datagram is received, an
/// answering datagram is sent containing the current date and time as a
/// ASCII character string (the data in the received datagram is
/// ignored)." So an empty datagram, or the newline `nc -u` sends, is
/// answered too.
///
/// The default format is the seed's, Python's `str(datetime.now())`:
/// `YYYY-MM-DD HH:MM:SS.ffffff`, e.g. `2021-01-17 18:49:45.123456`, with no
/// line ending. [`rfc867`](Self::rfc867) gives the line xinetd's daytime
/// service sends, `25 NOV 2026 03:12:09 UTC` and CR LF;
/// [`with_format`](Self::with_format) takes any chrono `strftime` format.
///
/// A UDP reply keeps to the [`Amplification`] limit, by default
/// `max(3 × request, 128)` bytes, which every line shorter than 128 bytes
/// meets whatever the request; a longer one is not sent at all, since a
/// date cut short is no date.
///
/// A format without fractions of a second is rendered at most once per
/// second and shared by all workers, as nginx caches its time strings.
#[derive(Debug)]
pub struct Daytime {
    layout: Layout,
    amplification: Amplification,
    /// Whether the text changes within a second (the format shows fractions).
    sub_second: bool,
    /// The text for the second it was rendered in (unix seconds, text).
    cache: Mutex<(i64, String)>,
}

/// How the time is written.
#[derive(Debug)]
enum Layout {
    /// A chrono `strftime` format.
    Format(Vec<Item<'static>>),
    /// xinetd's daytime line.
    Rfc867,
}

/// The seed's format: Python's `str(datetime.now())`.
pub const SEED_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

impl Daytime {
    /// The seed's format, `YYYY-MM-DD HH:MM:SS.ffffff`.
    pub fn new() -> Self {
        Self::with_format(SEED_FORMAT).expect("the seed format is valid")
    }

    /// The line xinetd's built-in daytime service sends, such as
    /// `25 NOV 2026 03:12:09 UTC\r\n`: RFC 867's second example syntax,
    /// "that used in SMTP: dd mmm yy hh:mm:ss zzz", with a four-digit year,
    /// in local time, ending in CR LF.
    ///
    /// xinetd ends with the zone's abbreviation. Without a zone database
    /// the abbreviation is unknown, so the zone is `UTC` when local time is
    /// UTC and otherwise the numeric offset (`+0100`), as SMTP's date syntax
    /// (RFC 822) also allows.
    pub fn rfc867() -> Self {
        Daytime {
            layout: Layout::Rfc867,
            amplification: Amplification::default(),
            sub_second: false,
            cache: Mutex::new((i64::MIN, String::new())),
        }
    }

    /// A chrono `strftime` format, e.g. `"%a %b %e %H:%M:%S %Y\r\n"`.
    ///
    /// A format chrono cannot parse is an [`Error::InvalidSetting`].
    pub fn with_format(format: &str) -> Result<Self, Error> {
        let items: Vec<Item<'static>> = StrftimeItems::new(format)
            .map(|item| item.to_owned())
            .collect();
        if items.iter().any(|i| matches!(i, Item::Error)) {
            return Err(Error::InvalidSetting {
                setting: "Daytime::with_format",
                reason: format!("{format:?} is not a valid strftime format"),
            });
        }
        let sub_second = items.iter().any(|i| {
            matches!(
                i,
                Item::Fixed(
                    chrono::format::Fixed::Nanosecond
                        | chrono::format::Fixed::Nanosecond3
                        | chrono::format::Fixed::Nanosecond6
                        | chrono::format::Fixed::Nanosecond9
                        | chrono::format::Fixed::Internal(_)
                ) | Item::Numeric(chrono::format::Numeric::Nanosecond, _)
            )
        });
        Ok(Daytime {
            layout: Layout::Format(items),
            amplification: Amplification::default(),
            sub_second,
            cache: Mutex::new((i64::MIN, String::new())),
        })
    }

    /// Limits UDP replies relative to the request's size. Default:
    /// [`Amplification::default`], `max(3 × request, 128)` bytes.
    pub fn amplification(mut self, limit: Amplification) -> Self {
        self.amplification = limit;
        self
    }

    /// The text for `now`.
    pub fn render(&self, now: DateTime<Local>) -> String {
        match &self.layout {
            Layout::Format(items) => now.format_with_items(items.iter()).to_string(),
            Layout::Rfc867 => {
                let mut line = now.format("%d %b %Y %H:%M:%S ").to_string();
                line.make_ascii_uppercase();
                match now.offset().local_minus_utc() {
                    0 => line.push_str("UTC"),
                    _ => line.push_str(&now.format("%z").to_string()),
                }
                line.push_str("\r\n");
                line
            }
        }
    }

    /// Writes the current time; `out` is a memory buffer, so holding the
    /// cache's lock while writing blocks nobody for long.
    fn write_now(&self, out: &mut impl Write) -> io::Result<()> {
        let now = Local::now();
        if let (Layout::Format(items), true) = (&self.layout, self.sub_second) {
            return write!(out, "{}", now.format_with_items(items.iter()));
        }
        let second = now.timestamp();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0 != second {
            *cache = (second, self.render(now));
        }
        out.write_all(cache.1.as_bytes())
    }
}

impl Default for Daytime {
    fn default() -> Self {
        Self::new()
    }
}

impl Handler for Daytime {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        // Rendered into a stack buffer (no allocation) when it fits, then
        // sent in one write, so a UDP reply is one datagram.
        let mut buf = [0u8; 256];
        let mut cursor = io::Cursor::new(&mut buf[..]);
        let heap;
        let text = match self.write_now(&mut cursor) {
            Ok(()) => {
                let len = cursor.position() as usize;
                &buf[..len]
            }
            Err(_) => {
                let mut text = Vec::new();
                self.write_now(&mut text)?;
                heap = text;
                &heap[..]
            }
        };
        if text.len() > self.amplification.budget(conn) {
            return Ok(());
        }
        super::reply_once(conn, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_format_matches_python_str_datetime() {
        let d = Daytime::new();
        let text = d.render(Local::now());
        // 2021-01-17 18:49:45.123456
        assert_eq!(text.len(), 26, "{text}");
        assert_eq!(&text[4..5], "-");
        assert_eq!(&text[10..11], " ");
        assert_eq!(&text[19..20], ".");
        assert!(d.sub_second);
    }

    #[test]
    fn second_formats_are_cached() {
        let d = Daytime::with_format("%H:%M:%S").unwrap();
        assert!(!d.sub_second);
        let mut a = Vec::new();
        d.write_now(&mut a).unwrap();
        assert_eq!(a.len(), 8);
    }

    #[test]
    fn rfc867_is_xinetds_line() {
        let utc = DateTime::from_timestamp(1_795_576_329, 0).unwrap();
        let local = utc.with_timezone(&Local);
        let line = Daytime::rfc867().render(local);
        if local.offset().local_minus_utc() == 0 {
            assert_eq!(line, "25 NOV 2026 03:12:09 UTC\r\n");
        } else {
            let zone = local.format("%z").to_string();
            assert!(line.ends_with(&format!(" {zone}\r\n")), "{line:?}");
            assert_eq!(line.len(), 28, "{line:?}");
        }
        assert!(!Daytime::rfc867().sub_second);
    }

    #[test]
    fn bad_format_is_an_error() {
        assert!(matches!(
            Daytime::with_format("%Q"),
            Err(Error::InvalidSetting { .. })
        ));
    }
}
