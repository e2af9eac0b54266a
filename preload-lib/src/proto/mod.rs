//! Protocol detectors fed with the bytes an application sends and receives on its sockets.
//!
//! - [`http`]: HTTP/1.x request/response header parsing, incremental and bounded per stream.
//! - [`dns`]: the query name of a DNS request packet (UDP port 53 traffic).
//! - [`statsd`]: StatsD lines in datagrams, captured and forwarded once per period.
//!
//! The parsers are pure (no I/O) so they can be unit-tested directly; `statsd` also holds
//! the small bounded queue of captured lines and `http` one switch (which headers to keep).

pub mod dns;
pub mod http;
pub mod statsd;
