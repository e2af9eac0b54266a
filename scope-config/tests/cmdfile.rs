//! Command files: parsing, the seed example, hardened reading, writing.

use std::os::unix::fs::{PermissionsExt, symlink};

use scope_config::Config;
use scope_config::cmdfile::{self, Refused, Reload};

#[test]
fn seed_example_and_reversal() {
    let mut cfg = Config::default();
    let first = cmdfile::parse(b"SCOPE_METRIC_VERBOSITY=9\nSCOPE_EVENT_HTTP=false\n");
    assert!(first.rejected.is_empty(), "{:?}", first.rejected);
    let a = first.apply(&mut cfg);
    assert_eq!(a.applied, ["SCOPE_METRIC_VERBOSITY", "SCOPE_EVENT_HTTP"]);
    assert_eq!(cfg.metric.format.verbosity, 9);
    assert!(!cfg.event.watch.http.enable);

    let second = cmdfile::parse(b"SCOPE_METRIC_VERBOSITY=4\nSCOPE_EVENT_HTTP=true\n");
    second.apply(&mut cfg);
    assert_eq!(cfg.metric.format.verbosity, 4);
    assert!(cfg.event.watch.http.enable);
    let mut want = Config::default();
    want.apply_cribl_forcing();
    assert_eq!(cfg, want, "the second file fully reverses the first");
}

#[test]
fn parse_reports_every_bad_line() {
    let text = b"# comment\n\n   SCOPE_METRIC_VERBOSITY = 7   \r\nnot a setting\nSCOPE_BOGUS=1\nSCOPE_METRIC_VERBOSITY=42\nSCOPE_CONF_PATH=/x\n=novalue\nSCOPE_EVENT_HTTP=false\n\xff\xfe=1\n  # indented comment\nSCOPE_TAG_team = sre \nSCOPE_CMD_SNAPSHOT=true\nSCOPE_CONF_RELOAD=/etc/appscope/scope.yml\n";
    let cf = cmdfile::parse(text);
    assert_eq!(
        cf.settings,
        [
            ("SCOPE_METRIC_VERBOSITY".to_string(), "7".to_string()),
            ("SCOPE_EVENT_HTTP".into(), "false".into()),
            ("SCOPE_TAG_team".into(), "sre".into()),
            ("SCOPE_CMD_SNAPSHOT".into(), "true".into()),
            ("SCOPE_CONF_RELOAD".into(), "/etc/appscope/scope.yml".into()),
        ]
    );
    assert_eq!(cf.lines, [3, 9, 12, 13, 14]);
    let rej: Vec<(usize, &str)> = cf
        .rejected
        .iter()
        .map(|r| (r.line, r.reason.as_str()))
        .collect();
    assert_eq!(rej.len(), 6, "{rej:#?}");
    assert_eq!(rej[0], (4, "expected NAME=value"));
    assert!(rej[1].0 == 5 && rej[1].1.contains("unknown setting SCOPE_BOGUS"));
    assert!(
        rej[2].0 == 6 && rej[2].1.contains("SCOPE_METRIC_VERBOSITY") && rej[2].1.contains("0 to 9")
    );
    assert!(rej[3].0 == 7 && rej[3].1.contains("process start"));
    assert_eq!(rej[4], (8, "empty name"));
    assert_eq!(rej[5], (10, "not valid UTF-8"));
    assert_eq!(cf.rejected[0].text, "not a setting");

    let mut cfg = Config::default();
    let a = cf.apply(&mut cfg);
    assert_eq!(a.applied.len(), 5);
    assert_eq!(a.rejected.len(), 6);
    assert!(a.snapshot);
    assert_eq!(
        a.reload,
        Some(Reload::Path("/etc/appscope/scope.yml".into()))
    );
    assert_eq!(cfg.metric.format.verbosity, 7);
    assert_eq!(cfg.tags["team"], "sre");

    let a = cmdfile::parse(b"SCOPE_CONF_RELOAD=true\nSCOPE_CMD_SNAPSHOT=false")
        .apply(&mut Config::default());
    assert_eq!(a.reload, Some(Reload::SearchOrder));
    assert!(!a.snapshot);
    assert!(cmdfile::parse(b"").settings.is_empty());
    // A long line is cut in the report.
    let long = format!("{}\n", "x".repeat(5000));
    let cf = cmdfile::parse(long.as_bytes());
    assert!(cf.rejected[0].text.chars().count() <= 201);
}

#[test]
fn read_checked_hardening() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let me = unsafe_free_uid();

    let good = cmdfile::path_for(dir, 1234);
    assert_eq!(good.file_name().unwrap(), "scope.1234");
    std::fs::write(&good, b"SCOPE_METRIC_VERBOSITY=9\n").unwrap();
    assert_eq!(
        cmdfile::read_checked(&good, me).unwrap(),
        b"SCOPE_METRIC_VERBOSITY=9\n"
    );

    assert_eq!(
        cmdfile::read_checked(&dir.join("scope.999"), me),
        Err(Refused::NotFound)
    );

    let link = dir.join("scope.1");
    symlink(&good, &link).unwrap();
    assert_eq!(cmdfile::read_checked(&link, me), Err(Refused::Symlink));
    let dangling = dir.join("scope.2");
    symlink("/etc/shadow", &dangling).unwrap();
    assert_eq!(cmdfile::read_checked(&dangling, me), Err(Refused::Symlink));

    let sub = dir.join("scope.3");
    std::fs::create_dir(&sub).unwrap();
    assert_eq!(
        cmdfile::read_checked(&sub, me),
        Err(Refused::NotRegular("directory"))
    );

    // A FIFO must be refused without blocking.
    let fifo = dir.join("scope.4");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let start = std::time::Instant::now();
    assert_eq!(
        cmdfile::read_checked(&fifo, me),
        Err(Refused::NotRegular("fifo"))
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(2));

    let big = dir.join("scope.5");
    std::fs::write(&big, vec![b'#'; 64 * 1024 + 1]).unwrap();
    assert_eq!(
        cmdfile::read_checked(&big, me),
        Err(Refused::TooLarge {
            size: 64 * 1024 + 1
        })
    );
    let limit = dir.join("scope.6");
    std::fs::write(&limit, vec![b'#'; 64 * 1024]).unwrap();
    assert_eq!(cmdfile::read_checked(&limit, me).unwrap().len(), 64 * 1024);

    // Ownership: a file owned by another non-root uid is refused; root-owned is fine.
    if me == 0 {
        let foreign = dir.join("scope.7");
        std::fs::write(&foreign, b"SCOPE_METRIC_VERBOSITY=1\n").unwrap();
        std::os::unix::fs::chown(&foreign, Some(4321), Some(4321)).unwrap();
        assert_eq!(
            cmdfile::read_checked(&foreign, 1000),
            Err(Refused::Owner {
                owner: 4321,
                expected: 1000
            })
        );
        assert!(cmdfile::read_checked(&foreign, 4321).is_ok());
        // Root-owned file read by a process running as uid 1000.
        assert!(cmdfile::read_checked(&good, 1000).is_ok());
        let e = cmdfile::read_checked(&foreign, 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("4321") && e.contains("1000"), "{e}");
    }
    // Refused files are left in place.
    assert!(link.symlink_metadata().is_ok() && big.exists());
}

/// The effective uid of this test process, read from /proc (no unsafe needed).
fn unsafe_free_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn write_then_read_and_apply() {
    let t = tempfile::tempdir().unwrap();
    let settings = vec![
        ("SCOPE_METRIC_VERBOSITY".to_string(), "9".to_string()),
        ("SCOPE_EVENT_HTTP".to_string(), "false".to_string()),
    ];
    let p = cmdfile::write(t.path(), 77, &settings).unwrap();
    assert_eq!(p, t.path().join("scope.77"));
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode & 0o044,
        0o044,
        "readable by the target process: {mode:o}"
    );
    let bytes = cmdfile::read_checked(&p, unsafe_free_uid()).unwrap();
    let cf = cmdfile::parse(&bytes);
    assert_eq!(cf.settings, settings);
    // No temp files left.
    let names: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["scope.77"]);
    // Invalid settings are refused before anything is written.
    let bad = vec![("SCOPE_METRIC_VERBOSITY".to_string(), "99".to_string())];
    assert!(cmdfile::write(t.path(), 78, &bad).is_err());
    let nl = vec![(
        "SCOPE_TAG_x".to_string(),
        "a\nSCOPE_LOG_LEVEL=debug".to_string(),
    )];
    assert!(cmdfile::write(t.path(), 79, &nl).is_err());
    assert!(!t.path().join("scope.78").exists() && !t.path().join("scope.79").exists());
}
