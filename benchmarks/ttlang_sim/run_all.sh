#!/usr/bin/env bash
# Run every tt-lang-sim measurement in README.md and append the JSON lines to
# $OUT (default: benchmarks/ttlang_sim/results.jsonl). Each run gets 300 s
# (the 5-minute limit of the brief); a run past it is recorded as a timeout.
#   PY=/work/ttlang-venv/bin/python THREADS="0 1" bash benchmarks/ttlang_sim/run_all.sh
set -u
here="$(cd "$(dirname "$0")" && pwd)"
PY="${PY:-/work/ttlang-venv/bin/python}"
OUT="${OUT:-$here/results.jsonl}"
LIMIT="${LIMIT:-300}"
THREADS="${THREADS:-0 1}"   # 0 = torch default (2 on a 2-core machine)

run() {  # run <label> <script> <args...>
  local label="$1"; shift
  local line
  line="$(timeout "$LIMIT" "$PY" "$@" 2>/dev/null | tail -n 1)"
  local rc=$?
  if [ -z "$line" ] || [ "${line:0:1}" != "{" ]; then
    line="{\"label\": \"$label\", \"timeout_or_error\": true, \"limit_s\": $LIMIT, \"args\": \"$*\"}"
  else
    line="{\"label\": \"$label\", \"load1\": $(cut -d' ' -f1 /proc/loadavg), ${line:1}"
  fi
  echo "$line" | tee -a "$OUT"
}

for t in $THREADS; do
  for n in 1024 2048 4096; do
    run "matmul" "$here/matmul_ttlang.py" --size "$n" --grid 8x8 --threads "$t" --repeat 3
  done
  run "matmul-block8" "$here/matmul_ttlang.py" --size 2048 --grid 8x8 --block 8,8,8 --threads "$t" --repeat 3
  for n in 1024 2048 4096; do
    run "tutorial-step4" "$here/run_tutorial_matmul.py" --size "$n" --grid 8x8 --threads "$t" --repeat 3
  done
  for s in 1024 4096; do
    for d in 64 128; do
      for c in "" "--causal"; do
        # shellcheck disable=SC2086
        run "flash" "$here/flash_attention_ttlang.py" --seq "$s" --head-dim "$d" --grid 8x8 $c --threads "$t" --repeat 3
      done
    done
  done
done
