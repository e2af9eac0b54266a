"""Apply latency of command files (helper of bench/agent.sh).

usage: agent_apply.py CMD_DIR STATUS_DIR PERIOD_SECS PID...

For each pid, writes `<CMD_DIR>/scope.<pid>` with SCOPE_METRIC_VERBOSITY=<n> atomically
(temp file + rename), staggered over one summary period so the writes land at every
phase of the library's period, then polls `<STATUS_DIR>/<pid>.json` every 10 ms until
its `last_command` names that file with the setting applied and the config in effect
shows the new verbosity. Prints one line per pid: `<pid> <latency seconds>`, or
`<pid> timeout` after 3 periods + 5 s.
"""
import json
import os
import sys
import time

cmd_dir, status_dir, period = sys.argv[1], sys.argv[2], float(sys.argv[3])
pids = [int(p) for p in sys.argv[4:]]


def current_status(pid):
    try:
        with open(os.path.join(status_dir, f"{pid}.json"), "rb") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def applied(doc, pid, value):
    if not doc:
        return False
    last = doc.get("last_command") or {}
    if not str(last.get("file", "")).endswith(f"scope.{pid}"):
        return False
    if "SCOPE_METRIC_VERBOSITY" not in (last.get("applied") or []):
        return False
    cur = (doc.get("config") or {}).get("current") or {}
    verb = ((cur.get("metric") or {}).get("format") or {}).get("verbosity")
    return str(verb) == str(value)


# A verbosity no process has yet, per pid (the status shows the current one).
plan = {}
for i, pid in enumerate(pids):
    doc = current_status(pid)
    cur = (((doc or {}).get("config") or {}).get("current") or {}).get("metric") or {}
    old = str((cur.get("format") or {}).get("verbosity", 4))
    plan[pid] = next(v for v in ("7", "2", "9") if v != old)

written = {}
done = {}
gap = period / max(len(pids), 1)
start = time.monotonic()
deadline = start + 3 * period + 5 + period
queue = list(pids)
while len(done) < len(pids) and time.monotonic() < deadline:
    now = time.monotonic()
    # Write the next command file when its turn in the stagger has come.
    while queue and now >= start + gap * len(written):
        pid = queue.pop(0)
        path = os.path.join(cmd_dir, f"scope.{pid}")
        tmp = os.path.join(cmd_dir, f".tmp.scope.{pid}")
        with open(tmp, "w") as f:
            f.write(f"SCOPE_METRIC_VERBOSITY={plan[pid]}\n")
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
        written[pid] = time.monotonic()
        now = written[pid]
    for pid, t0 in written.items():
        if pid in done:
            continue
        if applied(current_status(pid), pid, plan[pid]):
            done[pid] = time.monotonic() - t0
    time.sleep(0.01)

for pid in pids:
    print(pid, f"{done[pid]:.3f}" if pid in done else "timeout")
