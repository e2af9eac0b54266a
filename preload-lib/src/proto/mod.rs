//! Protocol detectors fed with the bytes an application sends and receives on its sockets.
//!
//! - [`http`]: HTTP/1.x request/response header parsing, incremental and bounded per stream.
//! - [`dns`]: the query name of a DNS request packet (UDP port 53 traffic).
//!
//! Everything here is pure (no I/O, no globals) so it can be unit-tested directly.

pub mod dns;
pub mod http;
