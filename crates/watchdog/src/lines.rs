//! Splitting a child's output stream into lines with bounded memory: a line longer than the
//! limit comes out in pieces, so that a child writing megabytes without a newline never makes
//! the watchdog buffer them.

/// A piece of the stream: a whole line (with its newline), or part of a long or unterminated
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The bytes, newline included when `complete`.
    pub bytes: Vec<u8>,
    /// True when the piece ends a line (with a newline, or at the end of the stream).
    pub complete: bool,
}

impl Piece {
    /// The text without its line ending, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes)
            .trim_end_matches(['\n', '\r'])
            .to_string()
    }
}

/// Accumulates bytes and hands out pieces of at most `max` bytes.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    /// A splitter whose pieces are at most `max` bytes (at least 1).
    pub fn new(max: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            max: max.max(1),
        }
    }

    /// Feeds `bytes`; returns the pieces now complete or full. Never holds more than `max` bytes.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let room = self.max - self.pending.len();
            let window = &bytes[..bytes.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&window[..=i]);
                    out.push(Piece {
                        bytes: std::mem::take(&mut self.pending),
                        complete: true,
                    });
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(window);
                    bytes = &bytes[window.len()..];
                    if self.pending.len() == self.max {
                        out.push(Piece {
                            bytes: std::mem::take(&mut self.pending),
                            complete: false,
                        });
                    }
                }
            }
        }
        out
    }

    /// The end of the stream: what is left, as a complete piece.
    pub fn finish(&mut self) -> Option<Piece> {
        if self.pending.is_empty() {
            return None;
        }
        Some(Piece {
            bytes: std::mem::take(&mut self.pending),
            complete: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, complete: bool) -> Piece {
        Piece {
            bytes: text.as_bytes().to_vec(),
            complete,
        }
    }

    #[test]
    fn whole_lines_come_out_as_written() {
        let mut s = LineSplitter::new(100);
        assert_eq!(
            s.push(b"one\ntwo\nthr"),
            vec![piece("one\n", true), piece("two\n", true)]
        );
        assert_eq!(s.push(b"ee\n"), vec![piece("three\n", true)]);
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_lines_come_out_in_pieces_of_at_most_max() {
        let mut s = LineSplitter::new(4);
        let out = s.push(b"abcdefghij\nxy");
        assert_eq!(
            out,
            vec![
                piece("abcd", false),
                piece("efgh", false),
                piece("ij\n", true)
            ]
        );
        assert_eq!(s.finish(), Some(piece("xy", true)));
        assert_eq!(piece("a\r\n", true).text(), "a");
    }

    #[test]
    fn ten_megabytes_without_a_newline_never_hold_more_than_max() {
        let mut s = LineSplitter::new(64 * 1024);
        let chunk = vec![b'x'; 8192];
        let mut total = 0;
        for _ in 0..(10 * 1024 * 1024 / 8192) {
            for p in s.push(&chunk) {
                assert!(p.bytes.len() <= 64 * 1024 && !p.complete);
                total += p.bytes.len();
            }
            assert!(s.pending.len() < 64 * 1024);
        }
        assert_eq!(total, 10 * 1024 * 1024);
    }
}
