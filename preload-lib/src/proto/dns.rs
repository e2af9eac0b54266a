//! DNS request parsing: the queried name of a standard query packet.

/// The first question's name of a DNS query packet (`QR` bit clear, one or more
/// questions), as dotted text without the trailing dot. `None` when `pkt` is not a
/// well-formed query. Compression pointers are not allowed in a question.
pub fn query_name(pkt: &[u8]) -> Option<String> {
    if pkt.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([pkt[2], pkt[3]]);
    if flags & 0x8000 != 0 {
        return None; // a response, not a query
    }
    if flags & 0x7800 != 0 {
        return None; // opcode other than QUERY
    }
    let qdcount = u16::from_be_bytes([pkt[4], pkt[5]]);
    if qdcount == 0 {
        return None;
    }
    let mut name = String::new();
    let mut i = 12;
    loop {
        let len = *pkt.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        let label = pkt.get(i..i + len)?;
        if !label.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(std::str::from_utf8(label).ok()?);
        i += len;
        if name.len() > 253 {
            return None;
        }
    }
    // QTYPE + QCLASS must follow.
    pkt.get(i..i + 4)?;
    if name.is_empty() { None } else { Some(name) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.extend_from_slice(&[0, 0, 1, 0, 1]);
        p
    }

    #[test]
    fn parses_a_query() {
        assert_eq!(
            query_name(&query("www.example.com")).as_deref(),
            Some("www.example.com")
        );
    }

    #[test]
    fn rejects_responses_truncated_and_garbage() {
        let mut r = query("a.b");
        r[2] |= 0x80;
        assert_eq!(query_name(&r), None);
        let q = query("example.org");
        assert_eq!(query_name(&q[..q.len() - 3]), None);
        assert_eq!(query_name(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(query_name(&[]), None);
    }
}
