//! Status file: atomic write, read, format.

use std::os::unix::fs::PermissionsExt;

use scope_config::Config;
use scope_config::status::{self, Interface, LastCommand, Rejected, StatusFile};

fn sample(pid: i64) -> StatusFile {
    StatusFile {
        schema: status::SCHEMA_VERSION,
        pid,
        ppid: 1,
        procname: "nginx".into(),
        cmd: "nginx -g daemon off;".into(),
        libscopever: "v1.4.0-k8s".into(),
        started: status::rfc3339_utc(1_700_000_000, 0),
        updated: status::now_rfc3339(),
        scoped: true,
        config: Config::default().config_in_effect(),
        interfaces: vec![Interface {
            name: "event".into(),
            config: Config::default().event.transport.url(),
            connected: false,
            attempts: 3,
            failure_details: Some("connection refused".into()),
            sent: 0,
            dropped: 12,
            lost_descriptors: 0,
        }],
        last_command: Some(LastCommand {
            file: "/tmp/scope.42".into(),
            applied: vec!["SCOPE_METRIC_VERBOSITY".into()],
            rejected: vec![Rejected {
                line: 2,
                reason: "unknown setting SCOPE_X".into(),
            }],
            at: status::now_rfc3339(),
        }),
        config_problems: vec!["scope.yml: unknown key metric.bogus (ignored)".into()],
    }
}

#[test]
fn write_atomic_and_read_back() {
    let t = tempfile::tempdir().unwrap();
    let s = sample(42);
    status::write_atomic(t.path(), &s).unwrap();
    let p = t.path().join("42.json");
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert_eq!(status::read(&p).unwrap(), s);
    // Shape: the design §3 keys.
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    for k in [
        "schema",
        "pid",
        "ppid",
        "procname",
        "cmd",
        "libscopever",
        "started",
        "updated",
        "scoped",
        "config",
        "interfaces",
        "last_command",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["schema"], 1);
    assert_eq!(v["config"]["current"]["metric"]["format"]["verbosity"], 4);
    assert_eq!(v["last_command"]["rejected"][0]["line"], 2);
    // Overwrite: still one file, no temp left.
    let mut s2 = s.clone();
    s2.updated = status::rfc3339_utc(1_800_000_000, 5_000_000);
    status::write_atomic(t.path(), &s2).unwrap();
    assert_eq!(
        status::read(&p).unwrap().updated,
        "2027-01-15T08:00:00.005Z"
    );
    let names: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["42.json"]);
}

#[test]
fn read_rejects_bad_files() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("1.json");
    assert!(matches!(status::read(&p), Err(status::StatusError::Io(_))));
    std::fs::write(&p, b"{not json").unwrap();
    assert!(matches!(
        status::read(&p),
        Err(status::StatusError::Json(_))
    ));
    let mut v = serde_json::to_value(sample(1)).unwrap();
    v["schema"] = 2.into();
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(matches!(
        status::read(&p),
        Err(status::StatusError::Schema(2))
    ));
    // Optional parts may be absent.
    let mut v = serde_json::to_value(sample(1)).unwrap();
    v.as_object_mut().unwrap().remove("last_command");
    v.as_object_mut().unwrap().remove("interfaces");
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    let s = status::read(&p).unwrap();
    assert!(s.last_command.is_none() && s.interfaces.is_empty());
}

#[test]
fn rfc3339() {
    let cases: &[(i64, u32, &str)] = &[
        (0, 0, "1970-01-01T00:00:00.000Z"),
        (951_782_400, 999_999_999, "2000-02-29T00:00:00.999Z"),
        (1_700_000_000, 0, "2023-11-14T22:13:20.000Z"),
        (4_102_444_799, 0, "2099-12-31T23:59:59.000Z"),
        (-1, 0, "1969-12-31T23:59:59.000Z"),
    ];
    for (s, n, want) in cases {
        assert_eq!(status::rfc3339_utc(*s, *n), *want);
    }
    let now = status::now_rfc3339();
    assert!(
        now.starts_with("20") && now.ends_with('Z') && now.len() == 24,
        "{now}"
    );
}

#[test]
fn readers_never_see_a_partial_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let mut first = sample(7);
    first.cmd = "x".repeat(20_000);
    status::write_atomic(&dir, &first).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let dir = dir.clone();
            let mut s = first.clone();
            std::thread::spawn(move || {
                for i in 0..150 {
                    s.updated = status::rfc3339_utc(1_700_000_000 + i, w);
                    status::write_atomic(&dir, &s).unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let stop = stop.clone();
        let p = dir.join("7.json");
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let s = status::read(&p).expect("a complete status file");
                assert_eq!(s.cmd.len(), 20_000);
                n += 1;
            }
            n
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 0);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["7.json"], "no temp files left");
}
