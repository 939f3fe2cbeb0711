#!/usr/bin/env bash
# Runs the import_parser fuzz target for a fixed budget; exits non-zero on a crash, a timeout
# or an allocation past the memory limit (CI calls it after `cargo install cargo-fuzz --locked`).
#
#   crates/orgplane-appzip/fuzz/run.sh SECONDS
#
# Stable Rust: `--sanitizer none` (no ASan, which needs nightly); libFuzzer's own limits
# catch hangs (-timeout) and memory growth (-rss_limit_mb, -malloc_limit_mb): the parser's
# limits keep a run far below 512 MiB, so more means a limit is not enforced.
set -euo pipefail
seconds="${1:?usage: run.sh SECONDS}"
here="$(cd "$(dirname "$0")" && pwd)"
"$here/seed.sh"
cd "$here/.."
exec cargo fuzz run import_parser --sanitizer none -- \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=512 -malloc_limit_mb=512 \
  -print_final_stats=1
