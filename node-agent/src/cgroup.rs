//! Mapping a host process to its pod and container from `/proc/<pid>/cgroup` (design §7).
//!
//! Handles cgroup v1 (one line per hierarchy) and v2 (`0::<path>`), the kubelet's
//! `systemd` driver (`kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/<runtime>-<id>.scope`)
//! and `cgroupfs` driver (`/kubepods/<qos>/pod<uid>/<id>`), the containerd
//! (`cri-containerd-`), CRI-O (`crio-`) and docker (`docker-`) scope names, kind's nested
//! `kubelet.slice`, and paths seen from another cgroup namespace (`/../..`).
//! CRI-O's `crio-conmon-<id>` monitor is not a container and maps to nothing.
//!
//! Pure parsers ([`parse_cgroup`], [`cgroup_version_from_mountinfo`]) plus a thin reader
//! ([`read_pid`]).

use std::fmt;
use std::path::Path;

/// Container runtime, from the scope name (systemd driver only; cgroupfs paths don't say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Unknown,
}

impl Runtime {
    /// Scheme of `status.containerStatuses[].containerID` (`containerd://...`).
    pub fn scheme(self) -> Option<&'static str> {
        match self {
            Runtime::Containerd => Some("containerd"),
            Runtime::CriO => Some("cri-o"),
            Runtime::Docker => Some("docker"),
            Runtime::Unknown => None,
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme().unwrap_or("unknown"))
    }
}

/// The kubelet's cgroup driver, from the path shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::Systemd => "systemd",
            Driver::Cgroupfs => "cgroupfs",
        })
    }
}

/// Where a process runs in Kubernetes terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContainer {
    /// Pod UID with dashes (`metadata.uid`).
    pub pod_uid: String,
    /// Container ID without scheme (64 hex digits for the usual runtimes).
    pub container_id: String,
    pub runtime: Runtime,
    pub driver: Driver,
    /// 1 or 2: the hierarchy the match came from.
    pub cgroup_version: u8,
}

impl PodContainer {
    /// Whether `status_id` (`containerd://<id>`, or a bare id) names this container.
    pub fn matches_status_id(&self, status_id: &str) -> bool {
        let id = status_id.rsplit("://").next().unwrap_or(status_id);
        !id.is_empty() && id == self.container_id
    }
}

/// Parse the text of `/proc/<pid>/cgroup`. `None` when the process is not in a pod
/// container (host process, CRI-O conmon, pod-level cgroup only).
pub fn parse_cgroup(text: &str) -> Option<PodContainer> {
    // Prefer the unified line, then v1 lines in file order; all name the same container.
    let mut lines: Vec<(u8, &str)> = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let version = if id == "0" && ctrl.is_empty() { 2 } else { 1 };
        lines.push((version, path));
    }
    lines.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
    lines.into_iter().find_map(|(v, path)| parse_path(path, v))
}

/// Parse one cgroup path (the part after `hierarchy:controllers:`).
pub fn parse_path(path: &str, cgroup_version: u8) -> Option<PodContainer> {
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "..")
        .collect();
    let pod_idx = segs.iter().rposition(|s| pod_uid_of(s).is_some())?;
    let (pod_uid, driver) = pod_uid_of(segs[pod_idx])?;
    let leaf = *segs.get(pod_idx + 1)?;
    let (container_id, runtime) = match driver {
        Driver::Systemd => {
            let name = leaf.strip_suffix(".scope")?;
            let (runtime, id) = if let Some(id) = name.strip_prefix("cri-containerd-") {
                (Runtime::Containerd, id)
            } else if let Some(id) = name.strip_prefix("crio-") {
                if id.starts_with("conmon-") {
                    return None;
                }
                (Runtime::CriO, id)
            } else if let Some(id) = name.strip_prefix("docker-") {
                (Runtime::Docker, id)
            } else {
                // Unknown runtime prefix: take what follows the last '-'.
                (Runtime::Unknown, name.rsplit('-').next()?)
            };
            (id, runtime)
        }
        Driver::Cgroupfs => (leaf, Runtime::Unknown),
    };
    if !is_container_id(container_id) {
        return None;
    }
    Some(PodContainer {
        pod_uid,
        container_id: container_id.to_string(),
        runtime,
        driver,
        cgroup_version,
    })
}

/// `pod<uid>` (cgroupfs) or `...-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid_of(seg: &str) -> Option<(String, Driver)> {
    if let Some(slice) = seg.strip_suffix(".slice") {
        let idx = slice.rfind("-pod")?;
        let raw = &slice[idx + 4..];
        let uid = raw.replace('_', "-");
        return is_uid(&uid).then_some((uid, Driver::Systemd));
    }
    let raw = seg.strip_prefix("pod")?;
    is_uid(raw).then(|| (raw.to_string(), Driver::Cgroupfs))
}

fn is_uid(s: &str) -> bool {
    // 8-4-4-4-12 hex (static pods use a 32-hex config hash, also accepted).
    let hex = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [a, b, c, d, e] => {
            a.len() == 8
                && b.len() == 4
                && c.len() == 4
                && d.len() == 4
                && e.len() == 12
                && parts.iter().all(|p| hex(p))
        }
        [one] => one.len() == 32 && hex(one),
        _ => false,
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() >= 12 && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// cgroup layout of the host, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Only cgroup2 at /sys/fs/cgroup.
    Unified,
    /// cgroup v1 hierarchies plus a cgroup2 mount (usually /sys/fs/cgroup/unified).
    Hybrid,
    /// cgroup v1 only.
    Legacy,
}

/// Classify the host's cgroup layout from mountinfo text. `None` when no cgroup is mounted.
pub fn cgroup_version_from_mountinfo(text: &str) -> Option<CgroupLayout> {
    let (mut v1, mut v2) = (false, false);
    for line in text.lines() {
        // fields ... " - " fstype source options
        let Some((_, rest)) = line.split_once(" - ") else {
            continue;
        };
        match rest.split_whitespace().next() {
            Some("cgroup2") => v2 = true,
            Some("cgroup") => v1 = true,
            _ => {}
        }
    }
    match (v1, v2) {
        (false, true) => Some(CgroupLayout::Unified),
        (true, true) => Some(CgroupLayout::Hybrid),
        (true, false) => Some(CgroupLayout::Legacy),
        (false, false) => None,
    }
}

/// Read `<proc_root>/<pid>/cgroup` and parse it. `Ok(None)` when not in a pod container.
pub fn read_pid(proc_root: &Path, pid: i32) -> std::io::Result<Option<PodContainer>> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup"))?;
    Ok(parse_cgroup(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup")
    }

    #[test]
    fn every_fixture_maps_as_expected() {
        let table = std::fs::read_to_string(fixtures().join("expected.tsv")).unwrap();
        let mut n = 0;
        for line in table
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 6, "bad row {line:?}");
            let text = std::fs::read_to_string(fixtures().join(f[0])).unwrap();
            let got = parse_cgroup(&text);
            if f[1] == "-" {
                assert_eq!(got, None, "{}", f[0]);
            } else {
                let got = got.unwrap_or_else(|| panic!("{}: no pod found", f[0]));
                assert_eq!(got.pod_uid, f[1], "{}", f[0]);
                assert_eq!(got.container_id, f[2], "{}", f[0]);
                assert_eq!(got.runtime.to_string(), f[3], "{}", f[0]);
                assert_eq!(got.driver.to_string(), f[4], "{}", f[0]);
                assert_eq!(got.cgroup_version.to_string(), f[5], "{}", f[0]);
            }
            n += 1;
        }
        assert!(n >= 12, "only {n} fixtures checked");
    }

    #[test]
    fn mountinfo_layouts() {
        let read = |n: &str| std::fs::read_to_string(fixtures().join(n)).unwrap();
        assert_eq!(
            cgroup_version_from_mountinfo(&read("mountinfo-unified.txt")),
            Some(CgroupLayout::Unified)
        );
        assert_eq!(
            cgroup_version_from_mountinfo(&read("mountinfo-hybrid.txt")),
            Some(CgroupLayout::Hybrid)
        );
        assert_eq!(
            cgroup_version_from_mountinfo(&read("mountinfo-legacy.txt")),
            Some(CgroupLayout::Legacy)
        );
        assert_eq!(
            cgroup_version_from_mountinfo("1 2 0:1 / / rw - ext4 /dev/sda rw"),
            None
        );
    }

    #[test]
    fn status_container_ids() {
        let text =
            std::fs::read_to_string(fixtures().join("v2-systemd-crio-besteffort.cgroup")).unwrap();
        let pc = parse_cgroup(&text).unwrap();
        assert!(pc.matches_status_id(&format!("cri-o://{}", pc.container_id)));
        assert!(pc.matches_status_id(&pc.container_id));
        assert!(!pc.matches_status_id("cri-o://"));
        assert!(!pc.matches_status_id("containerd://0123456789abcdef"));
    }

    #[test]
    fn malformed_input_is_not_a_pod() {
        for t in [
            "",
            "garbage",
            "0::/kubepods/burstable/podnot-a-uid/abc",
            "0::/kubepods/burstable/pod1f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
            "0::/kubepods.slice/kubepods-pod1f3c2a4e_5b6d_4e7f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-xyz.scope",
        ] {
            assert_eq!(parse_cgroup(t), None, "{t:?}");
        }
    }

    #[test]
    fn reads_a_live_process() {
        // This test process is not in a pod: a real read that maps to nothing.
        let got = read_pid(Path::new("/proc"), std::process::id() as i32).unwrap();
        assert_eq!(got, None);
        assert!(read_pid(Path::new("/proc"), i32::MAX).is_err());
    }
}
