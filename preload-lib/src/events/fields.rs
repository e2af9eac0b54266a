//! An event's `data` without a `serde_json::Map`: borrowed keys and values on the stack,
//! sorted and written straight into the envelope when the event is sent. The bytes are
//! those of the same data built as a `Map` (keys in sorted order, values as `serde_json`
//! writes them), which the tests check.

use std::net::IpAddr;

use serde_json::Value;

use super::{put, put_str, put_u64};

/// One field's value.
#[derive(Debug, Clone, Copy)]
pub enum FVal<'a> {
    Str(&'a str),
    U64(u64),
    I64(i64),
    /// Written as `serde_json` writes an `f64` (`null` when not finite).
    F64(f64),
    /// An address, as a string (`IpAddr`'s `Display`).
    Ip(IpAddr),
    /// A string and its JSON literal, made once (the process's host and name).
    Quoted {
        text: &'a str,
        json: &'a str,
    },
}

impl<'a> From<&'a str> for FVal<'a> {
    fn from(s: &'a str) -> Self {
        FVal::Str(s)
    }
}
impl<'a> From<&'a String> for FVal<'a> {
    fn from(s: &'a String) -> Self {
        FVal::Str(s)
    }
}
macro_rules! from_uint {
    ($($t:ty),*) => {$(
        impl From<$t> for FVal<'_> {
            fn from(v: $t) -> Self {
                FVal::U64(u64::from(v))
            }
        }
    )*};
}
from_uint!(u8, u16, u32, u64);
impl From<i64> for FVal<'_> {
    fn from(v: i64) -> Self {
        FVal::I64(v)
    }
}
impl From<IpAddr> for FVal<'_> {
    fn from(v: IpAddr) -> Self {
        FVal::Ip(v)
    }
}

impl FVal<'_> {
    /// The value as `serde_json` writes it.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        match *self {
            FVal::Str(s) => put_str(out, s),
            FVal::U64(n) => put_u64(out, n),
            FVal::I64(n) if n >= 0 => put_u64(out, n as u64),
            FVal::I64(n) => put(out, &n),
            FVal::F64(f) => put(out, &f),
            FVal::Ip(ip) => {
                out.push(b'"');
                put_ip(out, ip);
                out.push(b'"');
            }
            FVal::Quoted { json, .. } => out.extend_from_slice(json.as_bytes()),
        }
    }

    /// The text the value filter is matched against (a string's own text, else the
    /// value as JSON, as for a `serde_json::Value`).
    pub(super) fn text(&self) -> std::borrow::Cow<'_, str> {
        match *self {
            FVal::Str(s) | FVal::Quoted { text: s, .. } => s.into(),
            FVal::Ip(ip) => ip.to_string().into(),
            other => {
                let mut out = Vec::new();
                other.write(&mut out);
                String::from_utf8(out).unwrap_or_default().into()
            }
        }
    }

    /// The same value as a `serde_json::Value`.
    pub fn to_value(self) -> Value {
        match self {
            FVal::Str(s) | FVal::Quoted { text: s, .. } => s.into(),
            FVal::U64(n) => n.into(),
            FVal::I64(n) => n.into(),
            FVal::F64(f) => f.into(),
            FVal::Ip(ip) => ip.to_string().into(),
        }
    }
}

/// An address as `IpAddr`'s `Display` writes it (IPv4 without the formatter).
fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, &o) in a.octets().iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            out.extend_from_slice(&buf[..n]);
        }
        IpAddr::V6(a) => {
            use std::io::Write;
            let _ = write!(out, "{a}");
        }
    }
}

/// Fields held inline (more spill to the heap).
const INLINE: usize = 24;

/// An event's `data`: up to [`INLINE`] fields without allocating. Fields added in key
/// order need no sorting.
pub struct Fields<'a> {
    inline: [(&'a str, FVal<'a>); INLINE],
    n: usize,
    spill: Vec<(&'a str, FVal<'a>)>,
    sorted: bool,
    /// Some key may need escaping (one not added with [`Fields::add`]).
    escape_keys: bool,
}

/// `a < b` as byte strings (what orders a `serde_json::Map`), eight bytes at a time.
#[inline]
fn key_lt(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let mut x = [0u8; 8];
        let mut y = [0u8; 8];
        x.copy_from_slice(&a[i..i + 8]);
        y.copy_from_slice(&b[i..i + 8]);
        let (x, y) = (u64::from_be_bytes(x), u64::from_be_bytes(y));
        if x != y {
            return x < y;
        }
        i += 8;
    }
    while i < n {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    a.len() < b.len()
}

impl Default for Fields<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Fields<'a> {
    pub fn new() -> Self {
        Fields {
            inline: [("", FVal::U64(0)); INLINE],
            n: 0,
            spill: Vec::new(),
            sorted: true,
            escape_keys: false,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> &[(&'a str, FVal<'a>)] {
        if self.spill.is_empty() {
            &self.inline[..self.n]
        } else {
            &self.spill
        }
    }

    fn as_mut_slice(&mut self) -> &mut [(&'a str, FVal<'a>)] {
        if self.spill.is_empty() {
            &mut self.inline[..self.n]
        } else {
            &mut self.spill
        }
    }

    /// Adds a field whose key the caller knows is not there yet: a name written in the
    /// source, with no byte that needs a JSON escape (written as it is).
    #[inline]
    pub fn add(&mut self, k: &'static str, v: impl Into<FVal<'a>>) {
        debug_assert!(!super::needs_escape(k.as_bytes()), "{k}");
        self.push(k, v.into());
    }

    #[inline]
    fn push(&mut self, k: &'a str, v: FVal<'a>) {
        debug_assert!(self.as_slice().iter().all(|(key, _)| *key != k), "{k}");
        if self.sorted
            && let Some((last, _)) = self.as_slice().last()
            && !key_lt(last.as_bytes(), k.as_bytes())
        {
            self.sorted = false;
        }
        if self.spill.is_empty() && self.n < INLINE {
            self.inline[self.n] = (k, v);
            self.n += 1;
        } else {
            if self.spill.is_empty() {
                self.spill.reserve(INLINE * 2);
                self.spill.extend_from_slice(&self.inline[..self.n]);
            }
            self.spill.push((k, v));
        }
    }

    /// Sets a field, replacing the value of a field of that key (`Map::insert`).
    pub fn insert(&mut self, k: &'a str, v: impl Into<FVal<'a>>) {
        let v = v.into();
        if let Some(f) = self.as_mut_slice().iter_mut().find(|(key, _)| *key == k) {
            f.1 = v;
        } else {
            self.escape_keys = true;
            self.push(k, v);
        }
    }

    /// Sets a field unless one of that key is there (`Map::entry(k).or_insert(v)`).
    pub fn insert_if_absent(&mut self, k: &'a str, v: impl Into<FVal<'a>>) {
        if !self.as_slice().iter().any(|(key, _)| *key == k) {
            self.escape_keys = true;
            self.push(k, v.into());
        }
    }

    /// Sorts the fields by key (the order of a `serde_json::Map`).
    pub(super) fn sort(&mut self) {
        if !self.sorted {
            self.as_mut_slice()
                .sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            self.sorted = true;
        }
    }

    /// Writes the (sorted) fields as a JSON object.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (k, v)) in self.as_slice().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if self.escape_keys {
                put_str(out, k);
                out.push(b':');
            } else {
                out.reserve(k.len() + 3);
                out.push(b'"');
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(b"\":");
            }
            v.write(out);
        }
        debug_assert!(self.sorted);
        out.push(b'}');
    }

    /// The same data as a `serde_json::Map` (tests, and the rare paths that need one).
    pub fn to_map(&self) -> serde_json::Map<String, Value> {
        self.as_slice()
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.to_value()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn key_order_is_byte_order() {
        let keys = [
            "",
            "a",
            "ab",
            "abcdefgh",
            "abcdefghi",
            "abcdefgi",
            "abcdefgh_",
            "http_",
            "http_flavor",
            "http_host",
            "B",
            "\u{e9}",
            "z\u{0}",
            "abcdefghabcdefgh",
            "abcdefghabcdefgz",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(key_lt(a.as_bytes(), b.as_bytes()), a < b, "{a:?} {b:?}");
            }
        }
        // In order: nothing to sort; out of order: sorted when written.
        let mut f = Fields::new();
        f.add("a", 1u8);
        f.add("b", 2u8);
        assert!(f.sorted);
        f.add("a0", 3u8);
        assert!(!f.sorted);
        f.sort();
        let mut out = Vec::new();
        f.write(&mut out);
        assert_eq!(out, br#"{"a":1,"a0":3,"b":2}"#);
    }

    #[test]
    fn fields_write_what_a_map_serializes_to() {
        let strs: Vec<String> = (0..40)
            .map(|n| format!("{}\"\\\u{1}\u{e9}{}", "a".repeat(n), "z".repeat(n % 9)))
            .collect();
        let keys: Vec<String> = (0..40).map(|n| format!("s{n:02}")).collect();
        let mut f = Fields::new();
        f.add("net_peer_port", 8080u16);
        f.add("zero", 0u64);
        f.add("big", u64::MAX);
        f.add("neg", -3i64);
        f.add("pos", 3i64);
        f.add("min", i64::MIN);
        f.add("dur", FVal::F64(1.5));
        f.add("nan", FVal::F64(f64::NAN));
        f.add("inf", FVal::F64(f64::INFINITY));
        f.add("e21", FVal::F64(1e21));
        f.add("v4", IpAddr::V4(Ipv4Addr::new(10, 0, 255, 1)));
        f.add("v4z", IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        f.add(
            "v6",
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 1, 0, 0, 0xab)),
        );
        f.add(
            "v6m",
            IpAddr::V6(Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped()),
        );
        f.add("Upper", "x");
        f.add(
            "quoted",
            FVal::Quoted {
                text: "a\"b",
                json: r#""a\"b""#,
            },
        );
        f.add("_under", "y");
        f.add("", "empty key");
        f.insert_if_absent("k\"\u{1}", "escaped key");
        for (k, v) in keys.iter().zip(&strs) {
            f.insert(k, v);
        }
        assert!(f.len() > INLINE, "spills");
        f.insert("pos", 4i64);
        f.insert_if_absent("zero", 9u64);
        f.insert_if_absent("new", "n");
        let map = f.to_map();
        assert_eq!(map["pos"], 4);
        assert_eq!(map["zero"], 0);
        f.sort();
        let mut out = Vec::new();
        f.write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&Value::Object(map)).unwrap()
        );
        // Filter texts as for a Value.
        for (_, v) in f.as_slice() {
            let want = match v.to_value() {
                Value::String(s) => s,
                other => other.to_string(),
            };
            assert_eq!(v.text(), want);
        }
    }
}
