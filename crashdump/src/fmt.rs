//! Allocation-free text formatting into a fixed buffer (usable in a signal handler).

use core::fmt;

/// A fixed-capacity text buffer implementing [`fmt::Write`]; output beyond the
/// capacity is dropped (and [`FixedBuf::truncated`] set) instead of failing.
pub struct FixedBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> Default for FixedBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FixedBuf<N> {
    pub const fn new() -> Self {
        FixedBuf {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 sequences are pushed (see push_str).
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }
    /// Shortens the contents to `len` bytes (no-op when already shorter).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
        }
    }
    pub fn truncated(&self) -> bool {
        self.truncated
    }
    /// Appends raw bytes (truncating).
    pub fn push_bytes(&mut self, b: &[u8]) {
        let room = N - self.len;
        let n = b.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        if n < b.len() {
            self.truncated = true;
        }
    }
    /// Appends `s` escaped for a JSON string body (no quotes added).
    pub fn push_json_escaped(&mut self, s: &[u8]) {
        for &c in s {
            match c {
                b'"' => self.push_bytes(b"\\\""),
                b'\\' => self.push_bytes(b"\\\\"),
                b'\n' => self.push_bytes(b"\\n"),
                b'\r' => self.push_bytes(b"\\r"),
                b'\t' => self.push_bytes(b"\\t"),
                0..=0x1f | 0x7f..=0xff => {
                    // Non-ASCII bytes may not be valid UTF-8: escape them as \u00XX.
                    let hex = b"0123456789abcdef";
                    self.push_bytes(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        hex[(c >> 4) as usize],
                        hex[(c & 15) as usize],
                    ]);
                }
                _ => self.push_bytes(&[c]),
            }
        }
    }
}

impl<const N: usize> fmt::Write for FixedBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        if s.len() <= room {
            self.push_bytes(s.as_bytes());
        } else {
            // Cut at a char boundary so as_str stays valid.
            let mut cut = room;
            while cut > 0 && !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.push_bytes(&s.as_bytes()[..cut]);
            self.truncated = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn truncates_without_failing() {
        let mut b = FixedBuf::<8>::new();
        write!(b, "{:#x}", 0xdeadbeefu64).unwrap();
        assert_eq!(b.as_str(), "0xdeadbe");
        assert!(b.truncated());
    }

    #[test]
    fn json_escape() {
        let mut b = FixedBuf::<64>::new();
        b.push_json_escaped(b"a\"b\\c\n\x01\xff");
        assert_eq!(b.as_str(), "a\\\"b\\\\c\\n\\u0001\\u00ff");
    }
}
