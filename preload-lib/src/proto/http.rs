//! Incremental HTTP/1.x header detection and parsing for one direction of a byte stream.
//!
//! A [`HttpStream`] is fed every chunk an application sends (or receives) on one socket.
//! It recognises a request or status line at the start of a message, accumulates the
//! header block (bounded by [`MAX_HEADER`] bytes), reports the parsed head, and then skips
//! the body by `Content-Length`. Chunked or length-less bodies put it in a resync state in
//! which only a chunk that itself starts with a start line is parsed. A stream whose first
//! bytes are not HTTP/1.x is marked as such and costs nothing afterwards.

/// Largest header block kept while waiting for the terminating blank line.
pub const MAX_HEADER: usize = 8192;

/// Most header lines kept per message in [`Request::headers`]/[`Response::headers`].
pub const MAX_KEPT_HEADERS: usize = 32;

static KEEP_HEADERS: AtomicBool = AtomicBool::new(false);

/// Keep every header line other than the ones parsed into fields, for the http event's
/// `headers` filter (`SCOPE_EVENT_HTTP_HEADER`). Off (the default), only `x-appscope`
/// is kept, so messages allocate nothing for headers nobody asked for.
pub fn set_keep_headers(on: bool) {
    KEEP_HEADERS.store(on, Relaxed);
}

static DETAIL: AtomicBool = AtomicBool::new(true);

/// Fill the message fields only http events use (`method`, `flavor`, `host`,
/// `user_agent`, `x_forwarded_for`, `status_text`). Off (http events off), messages carry
/// only what metrics use (`target`, `status`, `content_length`, kept headers) and
/// allocate nothing else. On by default.
pub fn set_detail(on: bool) {
    DETAIL.store(on, Relaxed);
}

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// `1.0` or `1.1`.
    pub flavor: String,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub x_forwarded_for: Option<String>,
    pub content_length: Option<u64>,
    /// Other header lines (`Name: value`, trimmed): `x-appscope` always, the rest only
    /// when [`set_keep_headers`] is on. At most [`MAX_KEPT_HEADERS`].
    pub headers: Vec<String>,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub flavor: String,
    pub status: u16,
    pub status_text: String,
    pub content_length: Option<u64>,
    /// As [`Request::headers`].
    pub headers: Vec<String>,
}

/// One message head found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing seen yet on this stream.
    Start,
    /// Inside a header block (bytes are in `buf`).
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Body of unknown length: parse only chunks that start with a start line.
    Resync,
    /// Not HTTP/1.x: ignore everything.
    NotHttp,
}

/// Detector/parser state for one direction of one connection.
#[derive(Debug)]
pub struct HttpStream {
    state: State,
    buf: Vec<u8>,
}

impl Default for HttpStream {
    fn default() -> Self {
        Self::new()
    }
}

/// Does `data` (a prefix of a message) look like the start of an HTTP/1.x start line?
/// `None` when more bytes are needed to decide.
fn looks_like_start(data: &[u8]) -> Option<bool> {
    if data.is_empty() {
        return None;
    }
    if data.starts_with(b"HTTP/1.") || b"HTTP/1.".starts_with(&data[..data.len().min(7)]) {
        return if data.len() >= 7 { Some(true) } else { None };
    }
    for m in METHODS {
        let m = m.as_bytes();
        if data.len() > m.len() {
            if data.starts_with(m) && data[m.len()] == b' ' {
                return Some(true);
            }
        } else if m.starts_with(data) {
            return None;
        }
    }
    Some(false)
}

/// The standard (RFC 9110 / IANA) reason phrase of a status code, when it has one.
/// Servers often put their own text in the status line; events report the standard one
/// so they stay within AppScope's schema.
pub fn reason_phrase(code: u16) -> Option<&'static str> {
    Some(match code {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        444 => "Connection Closed Without Response",
        451 => "Unavailable For Legal Reasons",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        599 => "Network Connect Timeout Error",
        _ => return None,
    })
}

/// Index of the first `\n` in `h` at or after `from` (word-at-a-time scan).
fn find_nl(h: &[u8], mut i: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    while let Some(chunk) = h.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w) ^ NL;
        // Lowest set high bit marks the first zero byte of `x` (exact for the first one).
        let t = x.wrapping_sub(LO) & !x & HI;
        if t != 0 {
            return Some(i + (t.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    h.get(i..)?.iter().position(|&b| b == b'\n').map(|p| p + i)
}

/// Index of the `\r` of the first `\r\n` in `h` at or after `from`.
fn find_crlf(h: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let p = find_nl(h, i)?;
        if p > from && h[p - 1] == b'\r' {
            return Some(p - 1);
        }
        i = p + 1;
    }
}

/// End (exclusive) of the first `\r\n\r\n` in `buf`, searching from byte `from`.
fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let p = find_nl(buf, i)?;
        if p >= 3 && &buf[p - 3..=p] == b"\r\n\r\n" {
            return Some(p + 1);
        }
        i = p + 1;
    }
}

impl HttpStream {
    pub const fn new() -> Self {
        HttpStream {
            state: State::Start,
            buf: Vec::new(),
        }
    }

    /// True once the stream is known not to carry HTTP/1.x.
    pub fn is_not_http(&self) -> bool {
        self.state == State::NotHttp
    }

    /// `n` bytes went through the stream without being seen (e.g. `sendfile`): they
    /// count as body bytes; if no body was expected, the stream resyncs.
    pub fn skip(&mut self, n: u64) {
        match self.state {
            State::Body(left) if n < left => self.state = State::Body(left - n),
            State::Body(_) => self.state = State::Start,
            State::NotHttp => {}
            _ => self.state = State::Resync,
        }
    }

    /// Feed the next chunk of the stream; parsed message heads go to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut dyn FnMut(Message)) {
        while !data.is_empty() {
            match self.state {
                State::NotHttp => return,
                State::Body(n) => {
                    let skip = (data.len() as u64).min(n);
                    data = &data[skip as usize..];
                    let left = n - skip;
                    self.state = if left == 0 {
                        State::Start
                    } else {
                        State::Body(left)
                    };
                    if left == 0 && data.is_empty() {
                        return;
                    }
                }
                State::Start | State::Resync => {
                    let resync = self.state == State::Resync;
                    self.buf.clear();
                    let probe = &data[..data.len().min(8)];
                    match looks_like_start(probe) {
                        Some(true) => self.state = State::Head,
                        None if data.len() < 8 && !resync => {
                            // Too short to decide: keep it as the start of a header.
                            self.state = State::Head;
                        }
                        _ => {
                            if !resync {
                                self.state = State::NotHttp;
                            }
                            return;
                        }
                    }
                }
                State::Head => {
                    if self.buf.is_empty() {
                        // Fast path: the whole head is in this chunk; parse it in place.
                        if looks_like_start(&data[..data.len().min(8)]) == Some(false) {
                            self.buf = Vec::new();
                            self.state = State::NotHttp;
                            return;
                        }
                        let window = &data[..data.len().min(MAX_HEADER)];
                        if let Some((end, parsed)) = scan_head(
                            window,
                            KEEP_HEADERS.load(Relaxed),
                            true,
                            DETAIL.load(Relaxed),
                        ) {
                            self.state = finish(parsed, out);
                            data = &data[end..];
                            continue;
                        }
                    }
                    let before = self.buf.len();
                    let room = MAX_HEADER - before.min(MAX_HEADER);
                    let take = data.len().min(room);
                    self.buf.extend_from_slice(&data[..take]);
                    if let Some(b) = looks_like_start(&self.buf[..self.buf.len().min(8)])
                        && !b
                    {
                        self.buf = Vec::new();
                        self.state = State::NotHttp;
                        return;
                    }
                    match header_end(&self.buf, before.saturating_sub(3)) {
                        Some(end) => {
                            let used = end - before;
                            let head = std::mem::take(&mut self.buf);
                            data = &data[used..];
                            self.state = finish(parse_head(&head[..end]), out);
                            // Keep the allocation small between messages.
                            self.buf = head;
                            self.buf.clear();
                            self.buf.shrink_to(1024);
                        }
                        None => {
                            if self.buf.len() >= MAX_HEADER {
                                // Oversized head: give up on it and resync.
                                self.buf = Vec::new();
                                self.state = State::Resync;
                            }
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Report a parsed head and pick the state for what follows it.
fn finish(parsed: Option<(Message, BodyLen)>, out: &mut dyn FnMut(Message)) -> State {
    match parsed {
        Some((msg, body)) => {
            out(msg);
            match body {
                BodyLen::Known(0) => State::Start,
                BodyLen::Known(n) => State::Body(n),
                BodyLen::Unknown => State::Resync,
            }
        }
        None => State::Resync,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLen {
    Known(u64),
    Unknown,
}

fn parse_head(head: &[u8]) -> Option<(Message, BodyLen)> {
    scan_head(
        head,
        KEEP_HEADERS.load(Relaxed),
        false,
        DETAIL.load(Relaxed),
    )
    .and_then(|(_, parsed)| parsed)
}

/// The ASCII bytes `str::trim` removes (Unicode `White_Space` below 0x80).
fn is_ws(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ')
}

/// `b` without leading and trailing ASCII whitespace.
fn trim_ws(mut b: &[u8]) -> &[u8] {
    while let [f, rest @ ..] = b {
        if !is_ws(*f) {
            break;
        }
        b = rest;
    }
    while let [rest @ .., l] = b {
        if !is_ws(*l) {
            break;
        }
        b = rest;
    }
    b
}

/// Owned text of a byte slice: lossy UTF-8.
fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Owned text of a byte slice: lossy UTF-8, trimmed like `str::trim`.
fn trimmed(b: &[u8]) -> String {
    String::from_utf8_lossy(trim_ws(b)).trim().to_string()
}

/// Does `b` contain `needle` (lowercase ASCII), ignoring ASCII case?
fn contains_ignore_case(b: &[u8], needle: &[u8]) -> bool {
    b.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Header names the parser looks at; a line whose name starts with another letter is
/// skipped without looking further unless every header is kept.
const LC: &[u8] = b"content-length";
const TE: &[u8] = b"transfer-encoding";
const HOST: &[u8] = b"host";
const UA: &[u8] = b"user-agent";
const XFF: &[u8] = b"x-forwarded-for";
const XAPPSCOPE: &[u8] = b"x-appscope";

/// Byte-level head parser. Works on slices of `head` and allocates only the fields of the
/// returned message (and kept header lines). Same results as splitting the lossy UTF-8
/// text of the head into `\r\n` lines and trimming names/values with `str::trim`.
#[cfg(test)]
fn parse_head_with(head: &[u8], keep: bool) -> Option<(Message, BodyLen)> {
    scan_head(head, keep, false, true).and_then(|(_, parsed)| parsed)
}

/// Result of [`scan_head`]: the length of the head (through its blank line) and the
/// parsed message, `None` when the head is not a valid request/response.
type Scanned = (usize, Option<(Message, BodyLen)>);

/// Find the end of the head that starts `head` and parse it, in one pass. With
/// `need_end`, a head without its blank line is incomplete (`None`); without, whatever
/// is there is parsed as the whole head.
/// `detail`: see [`set_detail`].
fn scan_head(head: &[u8], keep: bool, need_end: bool, detail: bool) -> Option<Scanned> {
    let start_end = find_crlf(head, 0).unwrap_or(head.len());
    let start = &head[..start_end];
    let mut content_length = None;
    let mut chunked = false;
    let mut host: Option<&[u8]> = None;
    let mut ua: Option<&[u8]> = None;
    let mut xff: Option<&[u8]> = None;
    let mut kept = Vec::new();
    let mut pos = start_end + 2;
    let mut complete = None;
    while pos <= head.len() {
        let crlf = find_crlf(head, pos);
        let end = crlf.unwrap_or(head.len());
        let line = &head[pos..end];
        pos = end + 2;
        let Some(&b0) = line.first() else {
            // The blank line ends the head once its `\r\n` is there.
            complete = crlf.map(|_| pos);
            break;
        };
        if !keep
            && b0 < 0x80
            && !is_ws(b0)
            && !matches!(b0 | 0x20, b'c' | b'h' | b't' | b'u' | b'x')
        {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let raw_name = trim_ws(&line[..colon]);
        let value = trim_ws(&line[colon + 1..]);
        // A name with non-ASCII bytes at its ends may carry Unicode whitespace.
        let slow_name;
        let name = if raw_name.first().is_some_and(|b| *b >= 0x80)
            || raw_name.last().is_some_and(|b| *b >= 0x80)
        {
            slow_name = String::from_utf8_lossy(raw_name).trim().to_string();
            slow_name.as_bytes()
        } else {
            raw_name
        };
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if (keep || is(XAPPSCOPE))
            && kept.len() < MAX_KEPT_HEADERS
            && !(is(LC) || is(HOST) || is(UA) || is(XFF))
        {
            kept.push(trimmed(line));
        }
        if is(LC) {
            content_length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
        } else if is(TE) {
            chunked = contains_ignore_case(value, b"chunked");
        } else if is(HOST) {
            host = Some(value);
        } else if is(UA) {
            ua = Some(value);
        } else if is(XFF) {
            xff = Some(value);
        }
    }
    let end = match complete {
        Some(end) => end,
        None if need_end => return None,
        None => head.len(),
    };
    if !detail {
        (host, ua, xff) = (None, None, None);
    }
    let parsed = parse_start(
        start,
        content_length,
        chunked,
        [host, ua, xff],
        kept,
        detail,
    );
    Some((end, parsed))
}

/// The message of a head from its start line and the header fields found.
fn parse_start(
    start: &[u8],
    content_length: Option<u64>,
    chunked: bool,
    [host, ua, xff]: [Option<&[u8]>; 3],
    kept: Vec<String>,
    detail: bool,
) -> Option<(Message, BodyLen)> {
    let text = |b: &[u8]| if detail { lossy(b) } else { String::new() };
    if let Some(rest) = start.strip_prefix(b"HTTP/") {
        let mut parts = rest.splitn(3, |&b| b == b' ');
        let flavor = parts.next()?;
        let status: u16 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let status_text = parts.next().map(text).unwrap_or_default();
        let body = if (100..200).contains(&status) || status == 204 || status == 304 {
            BodyLen::Known(0)
        } else if chunked {
            BodyLen::Unknown
        } else {
            match content_length {
                Some(n) => BodyLen::Known(n),
                None => BodyLen::Unknown,
            }
        };
        return Some((
            Message::Response(Response {
                flavor: text(flavor),
                status,
                status_text,
                content_length,
                headers: kept,
            }),
            body,
        ));
    }
    let mut parts = start.split(|&b| b == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let flavor = parts.next()?.strip_prefix(b"HTTP/")?;
    if !METHODS.iter().any(|m| m.as_bytes() == method) {
        return None;
    }
    let body = if chunked {
        BodyLen::Unknown
    } else {
        BodyLen::Known(content_length.unwrap_or(0))
    };
    Some((
        Message::Request(Request {
            method: text(method),
            target: lossy(target),
            flavor: text(flavor),
            host: host.map(trimmed),
            user_agent: ua.map(trimmed),
            x_forwarded_for: xff.map(trimmed),
            content_length,
            headers: kept,
        }),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The former text-based parser: the reference the byte-level one must agree with.
    fn parse_head_text(head: &[u8], keep: bool) -> Option<(Message, BodyLen)> {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let start = lines.next()?;
        let mut content_length = None;
        let mut chunked = false;
        let mut host = None;
        let mut ua = None;
        let mut xff = None;
        let mut kept = Vec::new();
        for line in lines {
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let name = name.trim();
            if (keep || name.eq_ignore_ascii_case("x-appscope"))
                && kept.len() < MAX_KEPT_HEADERS
                && !["content-length", "host", "user-agent", "x-forwarded-for"]
                    .iter()
                    .any(|h| name.eq_ignore_ascii_case(h))
            {
                kept.push(line.trim().to_string());
            }
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse::<u64>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("host") {
                host = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("user-agent") {
                ua = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("x-forwarded-for") {
                xff = Some(value.to_string());
            }
        }
        if let Some(rest) = start.strip_prefix("HTTP/") {
            let mut parts = rest.splitn(3, ' ');
            let flavor = parts.next()?.to_string();
            let status: u16 = parts.next()?.parse().ok()?;
            let status_text = parts.next().unwrap_or("").to_string();
            let body = if (100..200).contains(&status) || status == 204 || status == 304 {
                BodyLen::Known(0)
            } else if chunked {
                BodyLen::Unknown
            } else {
                match content_length {
                    Some(n) => BodyLen::Known(n),
                    None => BodyLen::Unknown,
                }
            };
            return Some((
                Message::Response(Response {
                    flavor,
                    status,
                    status_text,
                    content_length,
                    headers: kept,
                }),
                body,
            ));
        }
        let mut parts = start.split(' ');
        let method = parts.next()?.to_string();
        let target = parts.next()?.to_string();
        let flavor = parts.next()?.strip_prefix("HTTP/")?.to_string();
        if !METHODS.contains(&method.as_str()) {
            return None;
        }
        let body = if chunked {
            BodyLen::Unknown
        } else {
            BodyLen::Known(content_length.unwrap_or(0))
        };
        Some((
            Message::Request(Request {
                method,
                target,
                flavor,
                host,
                user_agent: ua,
                x_forwarded_for: xff,
                content_length,
                headers: kept,
            }),
            body,
        ))
    }

    fn feed_all(s: &mut HttpStream, chunks: &[&[u8]]) -> Vec<Message> {
        let mut v = Vec::new();
        for c in chunks {
            s.feed(c, &mut |m| v.push(m));
        }
        v
    }

    #[test]
    fn request_in_one_chunk() {
        let mut s = HttpStream::new();
        let m = feed_all(
            &mut s,
            &[b"GET /index.html?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n"],
        );
        assert_eq!(
            m,
            vec![Message::Request(Request {
                method: "GET".into(),
                target: "/index.html?x=1".into(),
                flavor: "1.1".into(),
                host: Some("localhost:8080".into()),
                user_agent: Some("curl/8".into()),
                x_forwarded_for: None,
                content_length: None,
                headers: vec![],
            })]
        );
    }

    #[test]
    fn other_headers_are_kept_only_when_asked_but_x_appscope_always() {
        let req = b"GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-AppScope: tag1\r\nX-Req-Id:  7 \r\n\r\n";
        let heads = |keep| match parse_head_with(req, keep) {
            Some((Message::Request(r), _)) => r.headers,
            other => panic!("{:?}", other.map(|m| m.0)),
        };
        assert_eq!(heads(false), vec!["X-AppScope: tag1"]);
        assert_eq!(
            heads(true),
            vec!["Accept: */*", "X-AppScope: tag1", "X-Req-Id:  7"]
        );
    }

    #[test]
    fn response_split_across_chunks_then_keepalive_second_response() {
        let mut s = HttpStream::new();
        let m = feed_all(
            &mut s,
            &[
                b"HT",
                b"TP/1.0 200 OK\r\nContent-Len",
                b"gth: 5\r\n\r\nhel",
                b"loHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            ],
        );
        assert_eq!(m.len(), 2);
        match (&m[0], &m[1]) {
            (Message::Response(a), Message::Response(b)) => {
                assert_eq!(
                    (a.status, a.status_text.as_str(), a.content_length),
                    (200, "OK", Some(5))
                );
                assert_eq!(a.flavor, "1.0");
                assert_eq!((b.status, b.status_text.as_str()), (404, "Not Found"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn post_body_is_skipped_not_parsed() {
        let mut s = HttpStream::new();
        let body = b"GET / HTTP/1.1\r\n\r\n"; // looks like HTTP but is body data
        let mut req = b"POST /api HTTP/1.1\r\nContent-Length: 18\r\n\r\n".to_vec();
        req.extend_from_slice(body);
        req.extend_from_slice(b"PUT /x HTTP/1.1\r\n\r\n");
        let m = feed_all(&mut s, &[&req]);
        assert_eq!(m.len(), 2);
        assert!(
            matches!(&m[0], Message::Request(r) if r.method == "POST" && r.content_length == Some(18))
        );
        assert!(matches!(&m[1], Message::Request(r) if r.method == "PUT" && r.target == "/x"));
    }

    #[test]
    fn non_http_stream_is_ignored_forever() {
        let mut s = HttpStream::new();
        let m = feed_all(
            &mut s,
            &[
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc",
                b"GET / HTTP/1.1\r\n\r\n",
            ],
        );
        assert!(m.is_empty());
        assert!(s.is_not_http());
    }

    #[test]
    fn chunked_response_resyncs_on_next_start_line() {
        let mut s = HttpStream::new();
        let m = feed_all(
            &mut s,
            &[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
                b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            ],
        );
        assert_eq!(m.len(), 2);
        assert!(matches!(&m[1], Message::Response(r) if r.status == 201));
    }

    #[test]
    fn oversized_header_is_bounded() {
        let mut s = HttpStream::new();
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 3 * MAX_HEADER));
        let m = feed_all(&mut s, &[&big, &big]);
        assert!(m.is_empty());
        assert!(s.buf.capacity() <= MAX_HEADER);
    }

    #[test]
    fn skipped_body_bytes_keep_the_stream_in_sync() {
        let mut s = HttpStream::new();
        let mut v = Vec::new();
        s.feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
            &mut |m| v.push(m),
        );
        s.skip(600);
        s.skip(400);
        s.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut |m| {
            v.push(m)
        });
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn no_content_for_204_and_304() {
        let mut s = HttpStream::new();
        let m = feed_all(
            &mut s,
            &[b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
        );
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn newline_search_matches_a_plain_scan() {
        let mut h = vec![b'a'; 40];
        for at in [0usize, 3, 7, 8, 9, 15, 16, 31, 39] {
            h.fill(b'a');
            h[at] = b'\n';
            for from in 0..h.len() + 2 {
                let want = h
                    .iter()
                    .skip(from)
                    .position(|&b| b == b'\n')
                    .map(|p| p + from);
                assert_eq!(find_nl(&h, from), want, "at {at} from {from}");
            }
        }
        // Bytes just above and below '\n' and high bytes do not match.
        let h = [
            0x0b,
            0x09,
            0x8a,
            0xff,
            0x0a ^ 0x80,
            0x00,
            0x01,
            0x02,
            0x0b,
            b'\n',
        ];
        assert_eq!(find_nl(&h, 0), Some(9));
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nA: b\n\r\n\r\n", 0), Some(25));
        assert_eq!(header_end(b"GET / HTTP/1.1\r\n\n\r\n", 0), None);
    }

    /// Deterministic xorshift, enough to shuffle pieces.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn byte_parser_agrees_with_the_text_parser() {
        let starts: &[&[u8]] = &[
            b"GET /a?b=1 HTTP/1.1",
            b"POST / HTTP/1.0",
            b"GET / HTTP/1.1 extra",
            b"GET /\xff\xfe HTTP/1.1",
            b"GETX / HTTP/1.1",
            b"GET /",
            b"PUT  HTTP/1.1",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.0 404 Not  Found ",
            b"HTTP/1.1 +204 No Content",
            b"HTTP/1.1 99999 Big",
            b"HTTP/1.1 200",
            b"HTTP/ 301 \xc3\xa9t\xe9",
            b"HTTP/1.1",
        ];
        let names: &[&[u8]] = &[
            b"Host",
            b"host ",
            b" HOST",
            b"User-Agent",
            b"user-agent\t",
            b"X-Forwarded-For",
            b"Content-Length",
            b"content-length",
            b"Transfer-Encoding",
            b"X-AppScope",
            b"x-appscope",
            b"Accept",
            b"Cookie",
            b"\xc2\xa0Host",
            b"Host\xc2\xa0",
            b"\xffHost",
            b"Connection",
            b"",
            b"t",
            b"X-Req-Id",
            b"\x0bhost",
        ];
        let values: &[&[u8]] = &[
            b" localhost:8080",
            b"  12 ",
            b"+7",
            b"18446744073709551616",
            b"abc",
            b" gzip, Chunked",
            b"chunk",
            b"curl/8.0",
            b" \xe2\x80\x83v\xe2\x80\x83 ",
            b"\xff\xfe",
            b"a:b:c",
            b"",
            b"1.2.3.4, 5.6.7.8",
            b"x\ny",
            b" 5\r",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..20_000 {
            let mut head = starts[(rng(&mut seed) % starts.len() as u64) as usize].to_vec();
            head.extend_from_slice(b"\r\n");
            for _ in 0..rng(&mut seed) % 8 {
                let r = rng(&mut seed);
                if r.is_multiple_of(17) {
                    head.extend_from_slice(b"no colon here\r\n");
                    continue;
                }
                head.extend_from_slice(names[(r % names.len() as u64) as usize]);
                if r % 13 != 1 {
                    head.push(b':');
                }
                head.extend_from_slice(values[((r >> 20) % values.len() as u64) as usize]);
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(b"\r\n");
            // In place, as a chunk: any prefix, and the head followed by body bytes.
            let cut = (rng(&mut seed) % (head.len() as u64 + 1)) as usize;
            let mut with_body = head.clone();
            with_body.extend_from_slice(b"GET / HTTP/1.1\r\n\r\nbody\r\n\r\n");
            for chunk in [&head[..cut], &with_body[..]] {
                for keep in [false, true] {
                    let want =
                        header_end(chunk, 0).map(|end| (end, parse_head_with(&chunk[..end], keep)));
                    assert_eq!(scan_head(chunk, keep, true, true), want, "round {round}");
                }
            }
            for keep in [false, true] {
                assert_eq!(
                    parse_head_with(&head, keep),
                    parse_head_text(&head, keep),
                    "round {round} keep {keep}: {:?}",
                    String::from_utf8_lossy(&head)
                );
            }
        }
    }

    #[test]
    fn without_detail_only_metric_fields_are_filled() {
        let req = b"POST /api?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nX-Forwarded-For: 1.2.3.4\r\nX-AppScope: t\r\nContent-Length: 3\r\n\r\n";
        let resp = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n";
        let lean = |h: &[u8]| scan_head(h, false, true, false).unwrap();
        let (end, parsed) = lean(req);
        assert_eq!(end, req.len());
        assert_eq!(
            parsed,
            Some((
                Message::Request(Request {
                    target: "/api?x=1".into(),
                    content_length: Some(3),
                    headers: vec!["X-AppScope: t".into()],
                    ..Request::default()
                }),
                BodyLen::Known(3)
            ))
        );
        let (_, parsed) = lean(resp);
        assert_eq!(
            parsed,
            Some((
                Message::Response(Response {
                    status: 404,
                    content_length: Some(9),
                    ..Response::default()
                }),
                BodyLen::Known(9)
            ))
        );
        // With detail, the same heads carry every field.
        match scan_head(req, false, true, true).unwrap().1 {
            Some((Message::Request(r), _)) => {
                assert_eq!((r.method.as_str(), r.flavor.as_str()), ("POST", "1.1"));
                assert_eq!(r.host.as_deref(), Some("h"));
                assert_eq!(r.user_agent.as_deref(), Some("u"));
                assert_eq!(r.x_forwarded_for.as_deref(), Some("1.2.3.4"));
            }
            other => panic!("{other:?}"),
        }
    }
}
