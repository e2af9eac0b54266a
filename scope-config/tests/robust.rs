//! No input crashes the parsers (deterministic pseudo-random inputs).

use scope_config::{Config, cmdfile, settings};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const PIECES: &[&str] = &[
    "SCOPE_METRIC_VERBOSITY",
    "SCOPE_EVENT_HTTP",
    "SCOPE_TAG_",
    "=",
    "==",
    "\n",
    "\r\n",
    "#",
    " ",
    "\t",
    "true",
    "false",
    "9",
    "-1",
    "99999999999999999999999",
    "tcp://",
    "[::1]",
    ":",
    "unix://@",
    "file://",
    "metric:",
    "  ",
    "- ",
    "type:",
    "watch:",
    "{",
    "}",
    "[",
    "]",
    "'",
    "\"",
    "$",
    "${",
    "&a",
    "*a",
    "!!tag",
    "\u{0}",
    "\u{ff}",
    "é",
    "(",
    ")",
    "\\",
    "?",
    "custom:",
    "filter:",
    "config:",
    "protocol:",
    "len: 0",
];

#[test]
fn random_inputs_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..1000 {
        let n = (rng.next() % 40) as usize;
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(PIECES[(rng.next() % PIECES.len() as u64) as usize]);
        }
        let mut bytes = s.clone().into_bytes();
        if rng.next().is_multiple_of(4) && !bytes.is_empty() {
            let i = (rng.next() % bytes.len() as u64) as usize;
            bytes[i] = (rng.next() & 0xff) as u8;
        }
        let cf = cmdfile::parse(&bytes);
        let mut c = Config::default();
        let applied = cf.apply(&mut c);
        assert!(applied.applied.len() <= cf.settings.len());
        let _ = Config::from_yaml_str(&s);
        let _ = scope_config::Transport::parse_dest(&s);
        let _ = scope_config::expand_vars(&s, &|_| Some("$x${y}".into()));
        let _ = settings::parse_size(&s);
        for sp in settings::ALL {
            let _ = settings::validate(sp.name, &s);
        }
        let _ = c.config_in_effect();
    }
}
