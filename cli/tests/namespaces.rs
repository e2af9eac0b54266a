//! A scoped process in its own mount and pid namespaces (`unshare --mount --pid --fork`
//! with a private /tmp): ps, inspect, update and snapshot reach it through
//! `/proc/<pid>/root`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn ps_inspect_update_snapshot_across_mount_and_pid_namespaces() {
    let s = Scope::new();
    let lib = lib_path();
    // Build before any timed wait.
    let _ = scope_bin();
    let marker = format!("nsmarker{}", std::process::id());
    // The library is opened before the private /tmp hides the checkout (which may itself
    // live under /tmp), then copied into the namespace's own /tmp.
    let script = format!(
        "exec 3<{} && mount -t tmpfs tmpfs /tmp && cat <&3 >/tmp/libscope.so && exec 3<&- && \
         mkdir -p /tmp/st /tmp/cmd /tmp/crash && \
         exec env LD_PRELOAD=/tmp/libscope.so SCOPE_STATUS_DIR=/tmp/st SCOPE_CMD_DIR=/tmp/cmd SCOPE_SNAPSHOT_DIR=/tmp/crash \
         SCOPE_SUMMARY_PERIOD=1 SCOPE_CRIBL_ENABLE=false SCOPE_EVENT_DEST=file:///tmp/events.json \
         SCOPE_METRIC_DEST=file:///tmp/metrics.json /usr/bin/python3 -c 'import time; time.sleep(120)' {marker}",
        lib.display()
    );
    let _ns = Proc::spawn(
        Command::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "sh",
                "-c",
                &script,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let p = wait_for(
        "the namespaced python in scope ps",
        Duration::from_secs(20),
        || {
            let v = s.json(&["ps"]);
            v.as_array()?
                .iter()
                .find(|p| p["cmdline"].to_string().contains(&marker))
                .cloned()
        },
    );
    let pid = p["pid"].as_i64().unwrap() as i32;
    assert_eq!(p["nspid"], 1, "{p}");
    assert_eq!(p["foreign_mntns"], true);
    assert_eq!(p["foreign_pidns"], true);
    let table = text(&s.run(&["ps"]).stdout);
    assert!(table.contains(&format!("{pid} (ns 1)")), "{table}");

    let i = wait_for(
        "its status file through /proc/<pid>/root",
        Duration::from_secs(20),
        || {
            let v = s.json(&["inspect", &pid.to_string()]);
            v["status"].is_object().then_some(v)
        },
    );
    assert_eq!(
        i["status"]["path"],
        format!("/proc/{pid}/root/tmp/st/1.json")
    );
    assert!(
        !std::path::Path::new("/tmp/st/1.json").exists()
            || std::fs::read_to_string("/tmp/st/1.json")
                .map(|t| !t.contains(&marker))
                .unwrap_or(true)
    );

    let out = s.run(&[
        "update",
        &pid.to_string(),
        "--set",
        "SCOPE_METRIC_VERBOSITY=9",
        "--wait",
    ]);
    let o = text(&out.stdout);
    assert!(out.status.success(), "{o}\n{}", text(&out.stderr));
    assert!(
        o.contains(&format!("/proc/{pid}/root/tmp/cmd/scope.1")),
        "{o}"
    );
    assert!(o.contains("applied   SCOPE_METRIC_VERBOSITY"), "{o}");

    let dir = s.home.path().join("snap");
    let v = s.json(&[
        "snapshot",
        &pid.to_string(),
        "--library-wait",
        "0",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(v["nspid"], 1);
    assert!(!v["threads"].as_array().unwrap().is_empty());
    let info = std::fs::read_to_string(dir.join("info")).unwrap();
    assert!(
        info.contains("namespaced pid: 1") && info.contains("other mount namespace: true"),
        "{info}"
    );
    let stacks = std::fs::read_to_string(dir.join("stacks")).unwrap();
    assert!(
        stacks.contains("libpython") || stacks.contains("python3"),
        "{stacks}"
    );
}
