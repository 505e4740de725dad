//! MySQL statement text with its values written in as literals, for the writes that send several
//! statements in one query (`script.rs`): the server takes no bound parameters in a
//! multi-statement query. Values are bound with the same `.bind` calls as a sqlx query, so one
//! list of binds serves both.
//!
//! Strings and bytes are written in hexadecimal (`_utf8mb4 X'…'`, `X'…'`), so no quote,
//! backslash or `sql_mode` (`NO_BACKSLASH_ESCAPES`, `ANSI_QUOTES`) can change how they read, and
//! the text holds nothing but hex digits, decimal numbers and `NULL` besides the statement's own.

use crate::store::{StoreError, StoreResult};

/// One value as a MySQL literal.
pub(super) trait Literal {
    fn write(self, out: &mut String);
}

/// A string: characters of utf8mb4, as the connection's bound strings are, so that a comparison
/// with a column uses the column's collation and index.
impl Literal for &str {
    fn write(self, out: &mut String) {
        if self.is_empty() {
            out.push_str("''");
        } else {
            out.push_str("_utf8mb4 ");
            write_hex(self.as_bytes(), out);
        }
    }
}

impl Literal for &String {
    fn write(self, out: &mut String) {
        self.as_str().write(out);
    }
}

impl Literal for String {
    fn write(self, out: &mut String) {
        self.as_str().write(out);
    }
}

impl Literal for &Option<String> {
    fn write(self, out: &mut String) {
        match self {
            Some(text) => text.write(out),
            None => out.push_str("NULL"),
        }
    }
}

/// Bytes: a binary string.
impl Literal for &Vec<u8> {
    fn write(self, out: &mut String) {
        if self.is_empty() {
            out.push_str("''");
        } else {
            write_hex(self, out);
        }
    }
}

impl Literal for i64 {
    fn write(self, out: &mut String) {
        out.push_str(&self.to_string());
    }
}

impl Literal for Option<i64> {
    fn write(self, out: &mut String) {
        match self {
            Some(n) => n.write(out),
            None => out.push_str("NULL"),
        }
    }
}

fn write_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out.push('\'');
}

/// The values of one statement, in the order of its placeholders.
#[derive(Default)]
pub(super) struct Literals {
    values: Vec<String>,
}

impl Literals {
    /// Adds the value of the next placeholder, as `sqlx::query(…).bind` does.
    pub fn bind(mut self, value: impl Literal) -> Self {
        let mut literal = String::new();
        value.write(&mut literal);
        self.values.push(literal);
        self
    }

    /// `template` with each of its `?` placeholders (those outside quoted strings and
    /// identifiers) replaced by the next value; an error unless the counts match.
    pub fn fill(self, template: &str) -> StoreResult<String> {
        let mut out = String::with_capacity(
            template.len() + self.values.iter().map(String::len).sum::<usize>(),
        );
        let count = self.values.len();
        let mut values = self.values.into_iter();
        let mut quote = None;
        let mut placeholders = 0;
        for c in template.chars() {
            match (quote, c) {
                (None, '?') => {
                    placeholders += 1;
                    if let Some(value) = values.next() {
                        out.push_str(&value);
                    }
                }
                (None, '\'' | '`' | '"') => {
                    quote = Some(c);
                    out.push(c);
                }
                (Some(open), c) if c == open => {
                    quote = None;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        if placeholders != count {
            return Err(StoreError::Backend(format!(
                "a statement with {placeholders} placeholders was given {count} values"
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_replace_the_placeholders_outside_quotes_in_order() {
        let text = Literals::default()
            .bind("it's")
            .bind(&vec![0u8, 0xff])
            .bind(-12i64)
            .bind(None::<i64>)
            .bind(&None::<String>)
            .bind(String::new())
            .fill("INSERT INTO `a?b` VALUES (?, ?, ?, '?', TIMESTAMP'1970-01-01', ?, ?, ?)")
            .unwrap();
        assert_eq!(
            text,
            "INSERT INTO `a?b` VALUES (_utf8mb4 X'69742773', X'00ff', -12, '?', \
             TIMESTAMP'1970-01-01', NULL, NULL, '')"
        );
    }

    #[test]
    fn a_count_that_does_not_match_is_an_error() {
        let too_few = Literals::default().bind(1i64).fill("VALUES (?, ?)");
        assert!(matches!(too_few, Err(StoreError::Backend(m)) if m.contains("2 placeholders")));
        let too_many = Literals::default().bind(1i64).bind(2i64).fill("VALUES (?)");
        assert!(too_many.is_err());
    }
}
