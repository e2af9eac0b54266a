//! Mapping a host process to its pod and container from `/proc/<pid>/cgroup`.
