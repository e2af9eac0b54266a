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

fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
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
                    match header_end(&self.buf) {
                        Some(end) => {
                            let used = end - before;
                            let head = std::mem::take(&mut self.buf);
                            data = &data[used..];
                            self.state = match parse_head(&head[..end]) {
                                Some((msg, body)) => {
                                    out(msg);
                                    match body {
                                        BodyLen::Known(0) => State::Start,
                                        BodyLen::Known(n) => State::Body(n),
                                        BodyLen::Unknown => State::Resync,
                                    }
                                }
                                None => State::Resync,
                            };
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

enum BodyLen {
    Known(u64),
    Unknown,
}

fn parse_head(head: &[u8]) -> Option<(Message, BodyLen)> {
    parse_head_with(head, KEEP_HEADERS.load(Relaxed))
}

fn parse_head_with(head: &[u8], keep: bool) -> Option<(Message, BodyLen)> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
