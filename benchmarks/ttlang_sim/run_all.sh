#!/usr/bin/env bash
# Run every tt-lang-sim measurement in README.md and append the JSON lines to
# $OUT (default: benchmarks/ttlang_sim/results.jsonl). Each run gets 300 s
# (the 5-minute limit of the brief); a run past it is recorded as a timeout.
#   PY=/work/ttlang-venv/bin/python THREADS="1 0" bash benchmarks/ttlang_sim/run_all.sh
set -u
here="$(cd "$(dirname "$0")" && pwd)"
PY="${PY:-/work/ttlang-venv/bin/python}"
OUT="${OUT:-$here/results.jsonl}"
LIMIT="${LIMIT:-300}"
THREADS="${THREADS:-1}"   # 0 = torch default (2 threads on a 2-core machine)

run() {  # run <label> <script> <args...>
  local label="$1"; shift
  local line
  line="$(timeout "$LIMIT" "$PY" "$@" 2>/dev/null | tail -n 1)"
  if [ -z "$line" ] || [ "${line:0:1}" != "{" ]; then
    line="{\"label\": \"$label\", \"timeout_or_error\": true, \"limit_s\": $LIMIT, \"args\": \"$*\"}"
  else
    line="{\"label\": \"$label\", \"load1\": $(cut -d' ' -f1 /proc/loadavg), ${line:1}"
  fi
  echo "$line" | tee -a "$OUT"
}

for t in $THREADS; do
  for acc in dfb dst; do
    for n in 1024 2048 4096; do
      run "matmul-acc-$acc" "$here/matmul_ttlang.py" --size "$n" --grid 8x8 --acc "$acc" --threads "$t" --repeat 3
    done
    run "matmul-acc-$acc-block8" "$here/matmul_ttlang.py" --size 2048 --grid 8x8 --acc "$acc" --block 8,8,8 --threads "$t" --repeat 3
  done
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
  for c in "" "--causal"; do
    # shellcheck disable=SC2086
    run "flash-bq2" "$here/flash_attention_ttlang.py" --seq 4096 --head-dim 128 --grid 8x8 --bq 2 $c --threads "$t" --repeat 3
  done
done

# True bf16 storage/arithmetic (simulator's --no-float32-promotion), for precision only.
for t in $THREADS; do
  run "matmul-bf16" "$here/matmul_ttlang.py" --size 2048 --grid 8x8 --no-fp32-promotion --threads "$t" --repeat 3
  run "flash-bf16" "$here/flash_attention_ttlang.py" --seq 1024 --head-dim 64 --grid 8x8 --no-fp32-promotion --threads "$t" --repeat 3
  run "flash-bf16" "$here/flash_attention_ttlang.py" --seq 1024 --head-dim 64 --grid 8x8 --causal --no-fp32-promotion --threads "$t" --repeat 3
done
