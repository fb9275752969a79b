//! `Qotd`: the RFC 865 quote of the day service.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Amplification;
use crate::{Connection, Error, Handler};

/// The quotes served by [`Qotd::default`], each short enough (at most
/// 128 bytes with its line end) to answer even an empty UDP datagram within
/// the default [`Amplification`] limit.
const DEFAULT_QUOTES: &[&str] = &[
    "\"Be conservative in what you do, be liberal in what you accept from others.\" (Jon Postel)",
    "\"Simplicity is prerequisite for reliability.\" (Edsger W. Dijkstra)",
    "\"We reject kings, presidents and voting. We believe in rough consensus and running code.\" (David Clark)",
    "\"Premature optimization is the root of all evil.\" (Donald Knuth)",
    "\"The network is the computer.\" (John Gage)",
    "\"Any sufficiently advanced technology is indistinguishable from magic.\" (Arthur C. Clarke)",
];

/// Sends a quote (RFC 865). Port 17.
///
/// RFC 865 over TCP: "Once a connection is established a short message is
/// sent out the connection (and any data received is thrown away). The
/// service closes the connection after sending the quote." Over UDP: "When
/// a datagram is received, an answering datagram is sent containing a quote
/// (the data in the received datagram is ignored)."
///
/// On the quotes: "It is recommended that it be limited to the ASCII
/// printing characters, space, carriage return, and line feed. The quote
/// may be just one or up to several lines, but it should be less than 512
/// characters." So each quote is checked to be ASCII text (tabs are
/// expanded to spaces) of at most [`MAX_LEN`](Self::MAX_LEN) (511) bytes, its lines
/// ending in CR LF, the last one included. Each request gets the next
/// quote in turn.
///
/// **Reflection risk**: over UDP any datagram, even an empty one, gets a
/// quote of up to 511 bytes: an amplifier. So a UDP reply also keeps to
/// the [`Amplification`] limit, by default `max(3 × request, 128)` bytes:
/// the next quote in turn that fits is sent, and none if none fits. The
/// default quotes all fit in 128 bytes; with longer ones, a client gets
/// them by sending a larger datagram, or
/// [`amplification`](Self::amplification) lifts the limit (only where no
/// untrusted host can reach the service).
pub struct Qotd {
    /// Each quote as sent: ASCII, CR LF line ends, at most `MAX_LEN` bytes.
    quotes: Vec<String>,
    /// The number of the next quote (modulo the count).
    next: AtomicUsize,
    amplification: Amplification,
}

impl Qotd {
    /// The longest quote, in bytes with its CR LF line ends: RFC 865 says a
    /// quote "should be less than 512 characters".
    pub const MAX_LEN: usize = 511;

    /// Serves `quotes`, each a quote of one or more lines, in turn.
    ///
    /// Line ends are made CR LF and trailing blank space removed. An empty
    /// list, an empty quote, a quote with characters other than ASCII
    /// printing characters, space, tab and line ends, or one longer than
    /// [`MAX_LEN`](Self::MAX_LEN) bytes is an [`Error::InvalidSetting`].
    pub fn new<I>(quotes: I) -> Result<Self, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let quotes = quotes
            .into_iter()
            .enumerate()
            .map(|(n, quote)| normalize(quote.as_ref()).map_err(|why| invalid("Qotd::new", n, why)))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_normalized(quotes, "Qotd::new")
    }

    /// Parses quotes in the format of fortune(6) files: quotes separated by
    /// lines holding only `%`. Empty quotes (from a leading or trailing
    /// `%`) are skipped; otherwise as [`new`](Self::new).
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::parse_as(text, "Qotd::parse")
    }

    /// Reads quotes from a file in the format [`parse`](Self::parse) takes.
    /// A file that cannot be read is an [`Error::InvalidSetting`] naming it.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::InvalidSetting {
            setting: "Qotd::from_file",
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::parse_as(&text, "Qotd::from_file")
    }

    /// Limits UDP replies relative to the request's size. Default:
    /// [`Amplification::default`], `max(3 × request, 128)` bytes.
    pub fn amplification(mut self, limit: Amplification) -> Self {
        self.amplification = limit;
        self
    }

    /// The quotes, as sent (CR LF line ends).
    pub fn quotes(&self) -> impl Iterator<Item = &str> {
        self.quotes.iter().map(String::as_str)
    }

    fn parse_as(text: &str, setting: &'static str) -> Result<Self, Error> {
        let mut quotes = Vec::new();
        let mut current = String::new();
        for line in text.lines().chain(std::iter::once("%")) {
            if line.trim_end() != "%" {
                current.push_str(line);
                current.push('\n');
                continue;
            }
            if !current.trim().is_empty() {
                let quote =
                    normalize(&current).map_err(|why| invalid(setting, quotes.len(), why))?;
                quotes.push(quote);
            }
            current.clear();
        }
        Self::from_normalized(quotes, setting)
    }

    fn from_normalized(quotes: Vec<String>, setting: &'static str) -> Result<Self, Error> {
        if quotes.is_empty() {
            return Err(Error::InvalidSetting {
                setting,
                reason: "no quotes".into(),
            });
        }
        Ok(Qotd {
            quotes,
            next: AtomicUsize::new(0),
            amplification: Amplification::default(),
        })
    }

    /// The next quote in turn of at most `budget` bytes.
    fn pick(&self, budget: usize) -> Option<&str> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.quotes.len();
        (0..n)
            .map(|i| self.quotes[(start + i) % n].as_str())
            .find(|q| q.len() <= budget)
    }
}

/// A quote as sent: lines ending in CR LF, tabs expanded, checked.
fn normalize(quote: &str) -> Result<String, String> {
    let mut out = String::new();
    for line in quote.trim_end().lines() {
        for c in line.trim_end().chars() {
            match c {
                // Tab stops every 8 columns, as a terminal shows them.
                '\t' => {
                    let col = out.len() - out.rfind('\n').map_or(0, |i| i + 1);
                    out.extend(std::iter::repeat_n(' ', 8 - col % 8));
                }
                ' '..='~' => out.push(c),
                _ => return Err(format!("{c:?} is not an ASCII printing character")),
            }
        }
        out.push_str("\r\n");
    }
    if out.trim().is_empty() {
        return Err("it is empty".into());
    }
    if out.len() > Qotd::MAX_LEN {
        return Err(format!(
            "it is {} bytes with CR LF line ends; at most {}",
            out.len(),
            Qotd::MAX_LEN
        ));
    }
    Ok(out)
}

fn invalid(setting: &'static str, n: usize, why: String) -> Error {
    Error::InvalidSetting {
        setting,
        reason: format!("quote {}: {why}", n + 1),
    }
}

impl Default for Qotd {
    /// A few short quotes about networks and software.
    fn default() -> Self {
        Self::new(DEFAULT_QUOTES).expect("the default quotes are valid")
    }
}

impl fmt::Debug for Qotd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Qotd")
            .field("quotes", &self.quotes.len())
            .field("amplification", &self.amplification)
            .finish_non_exhaustive()
    }
}

impl Handler for Qotd {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        match self.pick(self.amplification.budget(conn)) {
            Some(quote) => super::reply_once(conn, quote.as_bytes()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_quotes_fit_the_default_floor() {
        let q = Qotd::default();
        assert_eq!(q.quotes().count(), DEFAULT_QUOTES.len());
        for quote in q.quotes() {
            assert!(quote.len() <= Amplification::FLOOR, "{quote}");
            assert!(quote.ends_with("\r\n") && !quote[..quote.len() - 2].contains('\n'));
        }
    }

    #[test]
    fn fortune_files_parse() {
        let q = Qotd::parse("%\none\nline two  \n%\n\n%\r\nthree\r\n%\n").unwrap();
        let quotes: Vec<&str> = q.quotes().collect();
        assert_eq!(quotes, ["one\r\nline two\r\n", "three\r\n"]);
        let q = Qotd::parse("no separator\n\tindented\n").unwrap();
        assert_eq!(
            q.quotes().collect::<Vec<_>>(),
            ["no separator\r\n        indented\r\n"]
        );
    }

    #[test]
    fn bad_quotes_are_errors() {
        let err = |r: Result<Qotd, Error>| match r {
            Err(Error::InvalidSetting { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(Qotd::parse("%\n%\n")), "no quotes");
        assert_eq!(err(Qotd::new(Vec::<String>::new())), "no quotes");
        assert!(err(Qotd::new(["ok", " \n "])).starts_with("quote 2: it is empty"));
        assert!(err(Qotd::new(["caf\u{e9}"])).contains("not an ASCII printing"));
        assert!(err(Qotd::new(["bell\u{7}"])).contains("not an ASCII printing"));
        // 509 characters and CR LF: 511 bytes, the most allowed.
        assert!(Qotd::new(["x".repeat(509)]).is_ok());
        assert!(err(Qotd::new(["x".repeat(510)])).contains("512 bytes"));
    }

    #[test]
    fn quotes_come_in_turn_and_udp_takes_one_that_fits() {
        let q = Qotd::new(["a long quote here", "short"]).unwrap();
        assert_eq!(q.pick(usize::MAX), Some("a long quote here\r\n"));
        assert_eq!(q.pick(usize::MAX), Some("short\r\n"));
        assert_eq!(q.pick(usize::MAX), Some("a long quote here\r\n"));
        assert_eq!(q.pick(10), Some("short\r\n"));
        assert_eq!(q.pick(3), None);
    }
}
