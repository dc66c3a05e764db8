#!/usr/bin/env bash
# afd-generate's untimed warm-up passes run on a scratch sequence: the generated ids with
# --warmup 0, 1 and 3 are the same (batch of 2 differing prompts, the tiny golden checkpoint),
# and a bad --warmup value is refused with exit 2.
# usage: generate_warmup_test.sh AFD_GENERATE MODEL_DIR
set -u
gen=$1
model=$2
ids() {
  "$gen" --model "$model" --prompt-ids 5,17,300,42,7,99,1000,3 --max-tokens 6 --ignore-eos \
    --batch 2 --vary-prompts --warmup "$1" 2>/dev/null | grep '^sequence'
}
base=$(ids 0) || { echo "FAIL: afd-generate --warmup 0 failed"; exit 1; }
[[ $(echo "$base" | wc -l) -eq 2 ]] || { echo "FAIL: expected 2 sequences, got: $base"; exit 1; }
for w in 1 3; do
  got=$(ids "$w") || { echo "FAIL: afd-generate --warmup $w failed"; exit 1; }
  [[ $got == "$base" ]] || { printf 'FAIL: --warmup %s changed the output:\n%s\nvs\n%s\n' "$w" "$got" "$base"; exit 1; }
done
"$gen" --model "$model" --prompt-ids 5 --warmup -1 >/dev/null 2>&1
rc=$?
[[ $rc -eq 2 ]] || { echo "FAIL: --warmup -1 exited $rc, expected 2"; exit 1; }
echo "PASS: warm-up passes leave the output unchanged"
