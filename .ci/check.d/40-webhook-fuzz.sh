#!/usr/bin/env bash
# Bounded fuzz run of the webhook's AdmissionReview handler (webhook/fuzz, target
# `review`). Fails when libFuzzer finds a crash, panic, hang or leak. Duration:
# WEBHOOK_FUZZ_SECONDS (default 60). Needs nightly + cargo-fuzz (.ci/setup.d/40-webhook.sh).
set -euo pipefail
cd "$(dirname "$0")/../../webhook/fuzz"
secs="${WEBHOOK_FUZZ_SECONDS:-60}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Seed from the committed corpus; new inputs go to the temp copy, not the repo.
cp -r corpus/review "$work/corpus"
cargo +nightly fuzz build review
timeout $((secs + 300)) cargo +nightly fuzz run review "$work/corpus" -- \
  -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/"
echo "webhook fuzz: ${secs}s, no crash"
