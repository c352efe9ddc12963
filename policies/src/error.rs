//! Errors in policy text, located by line and column.

use core::ops::Range;

/// A policy that could not be read, and where the problem is.
///
/// Displays as one line: `line L, column C: <reason>`, with 1-based line and
/// column (the column counts characters, not bytes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct PolicyError {
    line: usize,
    column: usize,
    reason: String,
}

impl PolicyError {
    /// An error about the text at byte offset `offset` of `text`.
    pub(crate) fn at(text: &str, offset: usize, reason: impl Into<String>) -> PolicyError {
        PolicyError::at_bytes(text.as_bytes(), offset, reason)
    }

    /// An error about the value that `span` (byte offsets into `text`) covers.
    pub(crate) fn spanning(text: &str, span: Range<usize>, reason: impl Into<String>) -> PolicyError {
        PolicyError::at(text, span.start, reason)
    }

    /// An error about byte offset `offset` of `bytes`, which may not be UTF-8.
    pub(crate) fn at_bytes(bytes: &[u8], offset: usize, reason: impl Into<String>) -> PolicyError {
        let (line, column) = line_column(bytes, offset);
        PolicyError { line, column, reason: one_line(&reason.into()) }
    }

    /// The 1-based line of the problem.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The 1-based column (in characters) of the problem.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What is wrong, without the location.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The 1-based line and column of byte `offset` in `bytes`.
///
/// Offsets past the end point just after the last byte. Columns count UTF-8
/// characters (bytes that are not continuation bytes).
pub(crate) fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = bytes.get(..offset).unwrap_or(bytes);
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let this_line = before.get(line_start..).unwrap_or_default();
    let column = 1 + this_line.iter().filter(|&&b| !is_continuation(b)).count();
    (line, column)
}

/// Whether `b` continues a multi-byte UTF-8 character.
fn is_continuation(b: u8) -> bool {
    b & 0b1100_0000 == 0b1000_0000
}

/// Folds a possibly multi-line message into one line.
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_and_count_characters() {
        assert_eq!(line_column(b"abc", 0), (1, 1));
        assert_eq!(line_column(b"a\nbc", 3), (2, 2));
        assert_eq!(line_column("é = 1".as_bytes(), 2), (1, 2));
        assert_eq!(line_column(b"a\n", 100), (2, 1));
        assert_eq!(line_column(b"", 5), (1, 1));
    }

    #[test]
    fn display_is_one_line() {
        let e = PolicyError::at("x\ny", 2, "bad\n  thing\n");
        assert_eq!(e.to_string(), "line 2, column 1: bad; thing");
        assert_eq!((e.line(), e.column(), e.reason()), (2, 1, "bad; thing"));
    }
}
