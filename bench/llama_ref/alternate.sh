#!/usr/bin/env bash
# alternate.sh: llama.cpp and afd on the same weights, in alternating rounds, per-round ratios.
# On a VM whose bandwidth moves within minutes, one run of each says little; this runs
# llama_ref_bench (pp128, tg64) and then afd-generate (a 128-token prompt, then 32 decode steps
# at batch 1) on the matching afd checkpoints, ROUNDS times per group, and prints each round's
# afd / llama.cpp ratio and the median of the ratios. Groups run one after another (llama.cpp
# Q4_K_M with afd MLX4 and AWQ, Q8_0 with FP8, bf16 with bf16) so each group's files stay in the
# page cache; the first round of each group is a warm-up and is not counted.
#
#   bench/llama_ref/alternate.sh [--rounds N] [--build DIR] [--models DIR] [--threads N]
#                                [--groups q4_k_m,q8_0,bf16]
# Needs: build/bin/{llama_ref_bench,afd-generate}, models/m2-perf-bf16 (the GGUF source) and the
# afd checkpoints of the groups asked for (models/m2-perf-{mlx4,awq,fp8,bf16}; a missing one is
# skipped); llama.cpp's libraries are fetched by fetch_llama.sh into <build>/llama-ref.
set -u
cd "$(dirname "$0")/../.."
ROUNDS=4
BUILD=build
MODELS=models
THREADS=2
GROUPS_WANTED=q4_k_m,q8_0,bf16
while [[ $# -gt 0 ]]; do
  case $1 in
  --rounds) ROUNDS=$2; shift ;;
  --build) BUILD=$2; shift ;;
  --models) MODELS=$2; shift ;;
  --threads) THREADS=$2; shift ;;
  --groups) GROUPS_WANTED=$2; shift ;;
  -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "alternate.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "alternate.sh: bad value for --rounds" >&2; exit 2; }
BIN=$BUILD/bin
for b in llama_ref_bench afd-generate; do
  [[ -x $BIN/$b ]] || { echo "alternate.sh: $BIN/$b is missing (build it first)" >&2; exit 1; }
done
[[ -f $MODELS/m2-perf-bf16/config.json ]] ||
  { echo "alternate.sh: $MODELS/m2-perf-bf16 is missing (afd-gen-checkpoint --preset m2-perf)" >&2; exit 1; }
LIB=$(bench/llama_ref/fetch_llama.sh "$BUILD/llama-ref") || exit 1
PROMPT=$(seq -s, 100 227)

# bf16+act: the bf16 checkpoint with the opt-in bf16-activation prefill (--bf16-prefill;
# decode is the same as bf16's).
declare -A AFD_OF=([q4_k_m]="mlx4 awq" [q8_0]="fp8" [bf16]="bf16 bf16+act")
declare -A RATIOS
printf '%-6s %-8s %10s %10s %8s   %-8s %10s %10s %8s\n' round llama.cpp pp128 tg64 "" afd prefill decode ""
for group in ${GROUPS_WANTED//,/ }; do
  [[ -n ${AFD_OF[$group]:-} ]] || { echo "alternate.sh: unknown group $group" >&2; exit 2; }
  for ((r = 0; r <= ROUNDS; ++r)); do
    line=$("$BIN/llama_ref_bench" --lib "$LIB" --model "$MODELS/m2-perf-bf16" --work "$MODELS/llama-ref" \
      --types "$group" --threads "$THREADS" 2>&1 | awk '/^llama.cpp / {print $6, $9}')
    read -r lpp ltg <<<"$line"
    [[ -n ${ltg:-} ]] || { echo "alternate.sh: llama_ref_bench $group failed" >&2; exit 1; }
    for m in ${AFD_OF[$group]}; do
      dir=$MODELS/m2-perf-${m%+act}
      [[ -f $dir/config.json ]] || continue
      extra=()
      [[ $m == *+act ]] && extra=(--bf16-prefill)
      out=$(OPENBLAS_NUM_THREADS=$THREADS "$BIN/afd-generate" --model "$dir" --prompt-ids "$PROMPT" \
        --max-tokens 33 --ignore-eos --threads "$THREADS" "${extra[@]}" 2>&1)
      app=$(awk '/^prefill:/ {for (i = 1; i <= NF; ++i) if ($i == "=") print $(i + 1)}' <<<"$out")
      atg=$(awk '/^decode:/ {for (i = 1; i <= NF; ++i) if ($i == "=") print $(i + 1)}' <<<"$out")
      [[ -n $atg ]] || { echo "alternate.sh: afd-generate $m failed" >&2; exit 1; }
      rp=$(awk -v a="$app" -v b="$lpp" 'BEGIN {printf "%.2f", a / b}')
      rd=$(awk -v a="$atg" -v b="$ltg" 'BEGIN {printf "%.2f", a / b}')
      tag=$([[ $r -eq 0 ]] && echo warm-up || echo "")
      printf '%-6s %-8s %10s %10s %8s   %-8s %10s %10s %8s  prefill %sx, decode %sx\n' \
        "$r" "$group" "$lpp" "$ltg" "$tag" "$m" "$app" "$atg" "" "$rp" "$rd"
      if [[ $r -gt 0 ]]; then
        RATIOS[$m-pp]+="$rp "
        RATIOS[$m-tg]+="$rd "
      fi
    done
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR] = $1} END {if (NR) printf "%.2f (%.2f-%.2f)", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], a[NR]}'; }
echo
echo "afd / llama.cpp per round, median (range) of $ROUNDS rounds, $THREADS threads:"
for m in mlx4 awq fp8 bf16 bf16+act; do
  [[ -n ${RATIOS[$m-tg]:-} ]] || continue
  printf '  %-8s decode b1 %s   prefill 128 %s\n' "$m" "$(median "${RATIOS[$m-tg]}")" "$(median "${RATIOS[$m-pp]}")"
done
