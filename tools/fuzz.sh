#!/usr/bin/env bash
# Run the libFuzzer harnesses (tests/fuzz) and report executions and crashes per target.
#
#   tools/fuzz.sh BUILD_DIR SECONDS [WORKERS] [TARGET...]
#
# BUILD_DIR: a build made with -DCMAKE_C_COMPILER=clang -DRWKV_BUILD_FUZZERS=ON. Each target runs for SECONDS
# with WORKERS parallel processes (default 1; -jobs=WORKERS -workers=WORKERS), targets one after another,
# starting from the seed corpus tests/fuzz/corpus/<target> (read only) and the regression inputs; new inputs
# and crash files go under ${FUZZ_WORK:-/tmp/rwkv-fuzz}/<target>. Prints one line per target:
#   <target>: <executions> executions in <seconds> s by <workers> workers, <n> crash(es)
# and exits non-zero if any target crashed. CI runs it with a short time per target (.ci/run).
set -uo pipefail
build=$(cd "$1" && pwd); seconds=$2; workers=${3:-1}; shift 3 2>/dev/null || shift $#
root=$(cd "$(dirname "$0")/.." && pwd)
targets=${*:-model_file state_file vocab tokenizer}
work=${FUZZ_WORK:-/tmp/rwkv-fuzz}
declare -A max_len=([model_file]=262144 [state_file]=65536 [vocab]=16384 [tokenizer]=4096)
status=0
for t in $targets; do
  exe=$build/tests/fuzz/fuzz_$t
  [ -x "$exe" ] || { echo "$t: $exe not built (-DRWKV_BUILD_FUZZERS=ON)"; status=1; continue; }
  rm -rf "$work/$t"; mkdir -p "$work/$t/corpus" "$work/$t/crashes"
  seeds=("$root/tests/fuzz/corpus/$t")
  [ -d "$root/tests/fuzz/regressions/$t" ] && seeds+=("$root/tests/fuzz/regressions/$t")
  (cd "$work/$t" && RWKV_SOURCE_DIR=$root "$exe" "$work/$t/corpus" "${seeds[@]}" -jobs="$workers" \
      -workers="$workers" -max_total_time="$seconds" -max_len="${max_len[$t]}" -rss_limit_mb=4096 \
      -timeout=20 -print_final_stats=1 -artifact_prefix="$work/$t/crashes/" >"$work/$t/main.log" 2>&1)
  execs=0
  for log in "$work/$t"/fuzz-*.log; do
    n=$(grep -a "stat::number_of_executed_units" "$log" | awk '{print $2}')
    execs=$((execs + ${n:-0}))
  done
  crashes=$(find "$work/$t/crashes" -type f | wc -l)
  echo "$t: $execs executions in $seconds s by $workers workers, $crashes crash(es)"
  if [ "$crashes" -ne 0 ]; then
    status=1
    for c in "$work/$t"/crashes/*; do echo "  $c"; done
    grep -a -h -m3 "ERROR\|runtime error\|fuzz check failed" "$work/$t"/fuzz-*.log | sed 's/^/  /'
  fi
done
exit $status
