#!/usr/bin/env bash
# Bounded fuzz run of the webhook's AdmissionReview handler (webhook/fuzz, target
# `review`). Fails when libFuzzer finds a crash, panic, hang or leak. Duration:
# WEBHOOK_FUZZ_SECONDS (default 60). Needs nightly + cargo-fuzz (.ci/setup.d/40-webhook.sh).
set -euo pipefail
cd "$(dirname "$0")/../../webhook/fuzz"
secs="${WEBHOOK_FUZZ_SECONDS:-60}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Seed from the fixture corpus: whole reviews, and pod specs for the spliced half of the
# target. New inputs go to the temp dir, not the repo.
mkdir -p "$work/corpus"
/usr/bin/python3 -c '
import json, os, sys
out, fx = sys.argv[1], sys.argv[2]
for f in sorted(os.listdir(fx)):
    if f.endswith(".json") and not f.endswith(".expect.json"):
        raw = open(os.path.join(fx, f), "rb").read()
        open(os.path.join(out, f), "wb").write(raw)
        spec = json.loads(raw)["request"]["object"].get("spec", {})
        open(os.path.join(out, "spec-" + f), "w").write(json.dumps(spec))
' "$work/corpus" ../tests/fixtures
cargo +nightly fuzz build review
timeout $((secs + 300)) cargo +nightly fuzz run review "$work/corpus" -- \
  -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/"
echo "webhook fuzz: ${secs}s, no crash"
