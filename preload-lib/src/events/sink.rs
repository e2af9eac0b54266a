//! Where formatted lines go: the runtime's transports. Unit tests capture them instead.

/// Captured (events, metrics) lines.
#[cfg(test)]
type Captured = (Vec<Vec<u8>>, Vec<Vec<u8>>);

#[cfg(test)]
thread_local! {
    static CAPTURE: std::cell::RefCell<Captured> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Lines sent on this thread so far (events, metrics); test builds only.
#[cfg(test)]
pub fn take_captured() -> (Vec<String>, Vec<String>) {
    CAPTURE.with(|c| {
        let (e, m) = std::mem::take(&mut *c.borrow_mut());
        let s = |v: Vec<Vec<u8>>| {
            v.into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect()
        };
        (s(e), s(m))
    })
}

/// Enqueue one complete event line (non-blocking).
pub fn send_event(line: Vec<u8>) {
    #[cfg(test)]
    CAPTURE.with(|c| c.borrow_mut().0.push(line));
    #[cfg(not(test))]
    crate::transport::send_event(line);
}

/// Enqueue one complete metric line (non-blocking).
pub fn send_metric(line: Vec<u8>) {
    #[cfg(test)]
    CAPTURE.with(|c| c.borrow_mut().1.push(line));
    #[cfg(not(test))]
    crate::transport::send_metric(line);
}
