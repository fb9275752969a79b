//! `Daytime`: the local time as text.

use std::io::{self, Write};
use std::sync::Mutex;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Local};

use crate::{Connection, Error, Handler};

/// Writes the current local time as text and closes: over TCP on connect,
/// over UDP in reply to any datagram.
///
/// The default format is the seed's, Python's `str(datetime.now())`:
/// `YYYY-MM-DD HH:MM:SS.ffffff`, e.g. `2021-01-17 18:49:45.123456`, with no
/// line ending. [`with_format`](Self::with_format) takes any chrono
/// `strftime` format instead.
///
/// A format without fractions of a second is rendered at most once per
/// second and shared by all workers, as nginx caches its time strings.
#[derive(Debug)]
pub struct Daytime {
    items: Vec<Item<'static>>,
    /// Whether the text changes within a second (the format shows fractions).
    sub_second: bool,
    /// The text for the second it was rendered in (unix seconds, text).
    cache: Mutex<(i64, String)>,
}

/// The seed's format: Python's `str(datetime.now())`.
pub const SEED_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

impl Daytime {
    /// The seed's format, `YYYY-MM-DD HH:MM:SS.ffffff`.
    pub fn new() -> Self {
        Self::with_format(SEED_FORMAT).expect("the seed format is valid")
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
            items,
            sub_second,
            cache: Mutex::new((i64::MIN, String::new())),
        })
    }

    /// The text for `now`.
    pub fn render(&self, now: DateTime<Local>) -> String {
        now.format_with_items(self.items.iter()).to_string()
    }

    /// Writes the current time; `out` is a memory buffer, so holding the
    /// cache's lock while writing blocks nobody for long.
    fn write_now(&self, out: &mut impl Write) -> io::Result<()> {
        let now = Local::now();
        if self.sub_second {
            return write!(out, "{}", now.format_with_items(self.items.iter()));
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
        // Rendered into a stack buffer (no allocation), then sent in one
        // write, so a UDP reply is one datagram.
        let mut buf = [0u8; 256];
        let mut cursor = io::Cursor::new(&mut buf[..]);
        if self.write_now(&mut cursor).is_ok() {
            let len = cursor.position() as usize;
            return conn.write_all(&buf[..len]);
        }
        let mut text = Vec::new();
        self.write_now(&mut text)?;
        conn.write_all(&text)
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
    fn bad_format_is_an_error() {
        assert!(matches!(
            Daytime::with_format("%Q"),
            Err(Error::InvalidSetting { .. })
        ));
    }
}
