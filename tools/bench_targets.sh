#!/usr/bin/env bash
# The end-to-end figures of docs/PERFORMANCE.md, reproducibly: random checkpoints of the benchmark shapes, their
# conversions, then `rwkv-cpu bench run` / `bench quality`. Files that already exist are reused.
#
#   tools/bench_targets.sh make      # bf16 checkpoints + .rwkv conversions under $MODELS (~70 GB of disk)
#   tools/bench_targets.sh decode    # roofline ratios: eagle-7b q4/q8/f16, 1.5b (every version) and 0.1b
#   tools/bench_targets.sh prefill   # prefill 64/512/2048 and batched decode B = 1/4/8/16
#   tools/bench_targets.sh quality   # KL / top-1 / perplexity vs f32: tiny-5v2-730K and a 0.1b outlier model
#   tools/bench_targets.sh convert7b # the Eagle-7B-shaped bf16 -> q4 conversion under /usr/bin/time -v
#
# Environment: MODELS (default /work/bench-models), OUT (results, default ./bench-results), THREADS (2),
# TEXT (LAMBADA jsonl, default ../shared/data/lambada_test.jsonl), RWKV (the CLI, default rwkv-cpu).
set -euo pipefail
MODELS=${MODELS:-/work/bench-models}
OUT=${OUT:-bench-results}
THREADS=${THREADS:-2}
TEXT=${TEXT:-../shared/data/lambada_test.jsonl}
RWKV=${RWKV:-rwkv-cpu}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$MODELS" "$OUT"

make_ckpt() {   # preset version outliers -> $MODELS/<preset>-<version>[-outliersK]-bf16
  local name="$1-$2$([ "$3" = 0 ] || echo "-outliers$3")-bf16"
  [ -e "$MODELS/$name/model.safetensors" ] || $RWKV bench make "$1" "$MODELS/$name" --version "$2" --outliers "$3" --quiet
  echo "$MODELS/$name"
}

conv() {        # checkpoint-dir quant -> .rwkv beside it
  local out="${1%-bf16}-$2.rwkv"
  [ -e "$out" ] || $RWKV convert "$1" "$out" --quant "$2" --quiet
  echo "$out"
}

case "${1:-}" in
  make)
    conv "$(make_ckpt eagle-7b v5.2 0)" f16 >/dev/null
    conv "$MODELS/eagle-7b-v5.2-bf16" q8 >/dev/null   # q4: `convert7b`, timed
    for v in v5.2 v4 v6 v7; do for q in f16 q4; do conv "$(make_ckpt 1.5b $v 0)" $q >/dev/null; done; done
    for q in f16 q8 q4; do conv "$(make_ckpt 0.1b v5.2 0)" $q >/dev/null; done
    make_ckpt 0.1b v5.2 3 >/dev/null
    ;;
  decode)
    for f in eagle-7b-v5.2-q4 eagle-7b-v5.2-q8 eagle-7b-v5.2-f16 \
             1.5b-v5.2-q4 1.5b-v4-q4 1.5b-v6-q4 1.5b-v7-q4 1.5b-v5.2-f16 1.5b-v4-f16 1.5b-v6-f16 1.5b-v7-f16 \
             0.1b-v5.2-q4 0.1b-v5.2-q8 0.1b-v5.2-f16; do
      [ -e "$MODELS/$f.rwkv" ] || { echo "skip $f (no file)" >&2; continue; }
      $RWKV bench run "$MODELS/$f.rwkv" --threads "$THREADS" --prefill none --batch none --json > "$OUT/decode-$f.json"
      python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(f\"{r['model']:28s} {r['decode_ms']:9.2f} ms/token  {r['bandwidth_gb_s']:5.1f} GB/s  ratio {r['roofline_ratio']:.3f}  first token {r['first_token_s']*1e3:.0f} ms  RSS {r['peak_rss_bytes']/1e6:.0f} MB (file {r['file_bytes']/1e6:.0f})\")" "$OUT/decode-$f.json"
    done
    ;;
  prefill)
    for f in 1.5b-v5.2-q4 1.5b-v5.2-f16 eagle-7b-v5.2-q4; do
      [ -e "$MODELS/$f.rwkv" ] || continue
      $RWKV bench run "$MODELS/$f.rwkv" --threads "$THREADS" --runs 3 --budget 20 --markdown | tee "$OUT/prefill-$f.md"
    done
    ;;
  quality)
    $RWKV bench quality "$REPO/tests/data/tiny-5v2-730K/model.pth" --text "$TEXT" --docs 100 --threads "$THREADS" \
      --workdir "$MODELS/quality" --markdown | tee "$OUT/quality-tiny.md"
    $RWKV bench quality "$(make_ckpt 0.1b v5.2 3)" --text "$TEXT" --docs 20 --threads "$THREADS" \
      --workdir "$MODELS/quality" --markdown | tee "$OUT/quality-0.1b-outliers.md"
    ;;
  convert7b)
    /usr/bin/time -v $RWKV convert "$(make_ckpt eagle-7b v5.2 0)" "$MODELS/eagle-7b-v5.2-q4.rwkv" --quant q4 --quiet \
      2>&1 | grep -E "Elapsed|Maximum resident|User time|System time" | tee "$OUT/convert7b.txt"
    ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
