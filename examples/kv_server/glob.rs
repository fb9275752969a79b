//! The glob patterns of `PSUBSCRIBE`, matched exactly as Redis 7.0's
//! `stringmatchlen` (util.c) matches them, case-sensitively: `*`, `?`,
//! `[abc]`, `[^abc]`, `[a-z]` (either way round, bytes compared as C's
//! signed `char`), `\` escaping the next byte inside and outside brackets,
//! and the quirks a client can see: an unclosed `[` runs to the end of the
//! pattern, a `-` with nothing after it is itself, and a trailing `\` is
//! itself.
//!
//! Redis recurses at each `*`; but once a later `*` is reached, an earlier
//! one is never tried further (its `skipLongerMatches`), so one backtrack
//! point, the last `*`, gives the same answers without recursion: a
//! pattern of many stars cannot exhaust a coroutine's small stack.

/// Whether `string` matches `pattern`.
pub fn matches(pattern: &[u8], string: &[u8]) -> bool {
    // Redis reads the NUL after the pattern at some places: 0 past the end.
    let at = |k: usize| pattern.get(k).copied().unwrap_or(0);
    let (mut p, mut i) = (0, 0);
    // The last `*` met, and where in `string` what follows it is tried.
    let mut star: Option<(usize, usize)> = None;
    loop {
        match step(pattern, string, &mut p, &mut i) {
            Step::Done(true) => return true,
            Step::Star => {
                while p < pattern.len() && at(p + 1) == b'*' {
                    p += 1;
                }
                if pattern.len() - p == 1 {
                    return true;
                }
                star = Some((p, i));
                p += 1;
            }
            Step::Done(false) => match star {
                // Try what follows the `*` one byte further on; Redis never
                // tries it against the empty rest of the string.
                Some((s, from)) if from + 1 < string.len() => {
                    star = Some((s, from + 1));
                    p = s + 1;
                    i = from + 1;
                }
                _ => return false,
            },
        }
    }
}

enum Step {
    /// Matched to the end, or failed.
    Done(bool),
    /// Reached a `*` at `p` with bytes of `string` left.
    Star,
}

/// Matches from `p` and `i` on until the end, a mismatch, or a `*`.
fn step(pattern: &[u8], string: &[u8], p: &mut usize, i: &mut usize) -> Step {
    let at = |k: usize| pattern.get(k).copied().unwrap_or(0);
    while *p < pattern.len() && *i < string.len() {
        let c = string[*i];
        match pattern[*p] {
            b'*' => return Step::Star,
            b'?' => {}
            b'[' => {
                *p += 1;
                let negated = at(*p) == b'^';
                if negated {
                    *p += 1;
                }
                let mut matched = false;
                loop {
                    let left = pattern.len() - *p;
                    if at(*p) == b'\\' && left >= 2 {
                        *p += 1;
                        matched |= pattern[*p] == c;
                    } else if at(*p) == b']' {
                        break;
                    } else if left == 0 {
                        // An unclosed `[`: the pattern ends here.
                        *p -= 1;
                        break;
                    } else if left >= 3 && pattern[*p + 1] == b'-' {
                        let (mut start, mut end) = (signed(pattern[*p]), signed(pattern[*p + 2]));
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        *p += 2;
                        matched |= (start..=end).contains(&signed(c));
                    } else {
                        matched |= pattern[*p] == c;
                    }
                    *p += 1;
                }
                if matched == negated {
                    return Step::Done(false);
                }
            }
            b'\\' => {
                if pattern.len() - *p >= 2 {
                    *p += 1;
                }
                if pattern[*p] != c {
                    return Step::Done(false);
                }
            }
            literal => {
                if literal != c {
                    return Step::Done(false);
                }
            }
        }
        *i += 1;
        *p += 1;
        if *i == string.len() {
            while at(*p) == b'*' {
                *p += 1;
            }
            break;
        }
    }
    Step::Done(*p == pattern.len() && *i == string.len())
}

/// A byte as C's `char` on x86: signed.
fn signed(b: u8) -> i32 {
    i32::from(b as i8)
}
