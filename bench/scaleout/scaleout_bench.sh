#!/usr/bin/env bash
# scaleout_bench.sh: node-level benchmarks that need real processes pinned to cores.
#   scaleout  one attention node (+ gateway) on ATT_CORES cores and 1, 2, 4 expert nodes on
#             EXP_CORES disjoint cores each (taskset), unix sockets between them; batched decode
#             through the gateway (e2e_load_bench, CONC concurrent streams, PROMPT-token prompts,
#             TOKENS new tokens) per node count, plus 4 nodes with every step split into two
#             micro-batches (min_micro_batch_tokens 1) to show what the ping-pong costs.
#   twocore   the all-in-one mode squeezed onto 2 cores (like the 2-core dev VM): in-process
#             `afd-generate` batch 1/16 and the attention node with in-process experts behind the
#             gateway, vs afd-up (gateway + attention + 3 expert nodes) at 1 and 16 streams, with
#             the default thread split and the variants in TWOCORE_VARIANTS (the default
#             layout: every node hosts every expert, pack; "split": the experts split 3 ways).
#   roundtrip expert_roundtrip_bench on 2 cores: m2-tiny (RPC cost) and MODEL (1 token).
#   replicas  4 expert nodes (disjoint cores) each hosting every expert, limits.replica_choice
#             spread vs pack, at 1 and CONC streams.
#   contended `afd-generate` batch 1 on 2 cores, alone and with a busy loop sharing its second
#             core (a vCPU the hypervisor deschedules part of the time, or a co-located process),
#             RUNS runs each; with OLD_GENERATE=path, that binary alternates with $BIN's (A/B).
#   clock     clock_bench --per-core: a core's clock and expert-kernel rate with 1, 2, 4, ... cores
#             busy at once (turbo, power limits and, on a VM, the host's other work on the same
#             physical cores cap how well work spread over more cores scales).
# Every node is stopped before the script exits (also on error or Ctrl-C). Results go to
# OUTDIR/results.txt and stdout (scaleout: the attention node's step times per configuration in
# OUTDIR/steps.txt). Needs: bash, taskset, python3 (config.json), the binaries.
#
#   BIN=build/bin MODEL=models/m2-perf-bf16 bench/scaleout/scaleout_bench.sh scaleout twocore
# On a host without the checkpoint, GEN=1 makes it with $BIN/afd-gen-checkpoint (m2-perf bf16).
# Knobs (env): NODES="1 2 4" CONC=32 TOKENS=32 ATT_CORES=8 EXP_CORES=2 OUTDIR=/tmp/afd-scaleout
# SPLIT=0 leaves out scaleout's always-split row. REPLICAS=1: in scaleout every expert node hosts
# every expert and each layer's experts go to the least loaded node (replica_choice spread).
# MIN_TILE_PROMPT=N: limits.min_tile_prompt_tokens (1: every prompt on the AMX tiles).
set -u
BIN=${BIN:-build/bin}
MODEL=${MODEL:-models/m2-perf-bf16}
NODES=${NODES:-"1 2 4"}
CONC=${CONC:-32}
TOKENS=${TOKENS:-32}
PROMPT=${PROMPT:-32}
TWOCORE_VARIANTS=${TWOCORE_VARIANTS:-"unix;tcp --tcp;unix-1mb --micro-batches 1;split --replicas 1"}
ATT_CORES=${ATT_CORES:-8}
EXP_CORES=${EXP_CORES:-2}
OUTDIR=${OUTDIR:-/tmp/afd-scaleout}
TINY=${TINY:-tests/data/golden/m2-tiny}
phases=("$@")
[[ ${#phases[@]} -eq 0 ]] && phases=(scaleout twocore roundtrip)
mkdir -p "$OUTDIR"
RESULTS=$OUTDIR/results.txt
: >"$RESULTS"
: >"$OUTDIR/steps.txt"
pids=()

say() { echo "$*" | tee -a "$RESULTS"; }
stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  pids=()
}
trap 'stop_all' EXIT
trap 'stop_all; exit 130' INT TERM

ncpu=$(nproc)
# "a-b" core range for `count` cores starting at `first`, wrapped onto the cores present.
cores() {
  local first=$1 count=$2 list="" i
  for ((i = 0; i < count; ++i)); do list+="${list:+,}$(((first + i) % ncpu))"; done
  echo "$list"
}
# Waits until `file` contains `pattern` (or a node died): 0 ready, 1 not.
wait_for() {
  local file=$1 pattern=$2 timeout=${3:-300} t
  for ((t = 0; t < timeout * 10; ++t)); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    local p
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "a node exited; see $file"; return 1; }; done
    sleep 0.1
  done
  echo "timed out waiting for '$pattern' in $file"
  return 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Output tokens/s of e2e_load_bench's row for concurrency $2 in file $1.
tok_s() { awk -v c="$2" '$1 == c && NF >= 9 {print $4}' "$1" | tail -1; }
itl_p50() { awk -v c="$2" '$1 == c && NF >= 9 {print $7}' "$1" | tail -1; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null; }

prompt_ids=$(seq -s, 11 $((10 + PROMPT)))
# e2e CORES ADDR C LOG [ATTN]: 3 requests at 1 stream, then 2C requests at C streams; with the
# attention node's address ATTN, the C-stream run also logs where its steps' time went.
e2e() {
  taskset -c "$1" "$BIN/e2e_load_bench" --grpc "$2" --concurrency 1 --requests 3 \
    --prompt-tokens "$PROMPT" --max-tokens "$TOKENS" --vocab "$vocab" >"$4" 2>&1
  taskset -c "$1" "$BIN/e2e_load_bench" --grpc "$2" --concurrency "$3" --requests $((2 * $3)) \
    --prompt-tokens "$PROMPT" --max-tokens "$TOKENS" --vocab "$vocab" ${5:+--attention "$5"} >>"$4" 2>&1
}
# The attention node's step-time table of e2e log $1 and its expert nodes' pairs and compute per
# step, indented (empty when none was logged).
step_table() {
  sed -n '/^# attention node, this window:/,/^weight MB\/step/p' "$1" | tail -n +2 | sed 's/^/    /'
  grep -h '^# expert node pairs' "$1" | tail -1 | sed 's/^# /    /'
  grep -h '^# expert node compute' "$1" | tail -1 | sed 's/^# /    /'
}

needs_model=0
for phase in "${phases[@]}"; do [[ $phase != clock ]] && needs_model=1; done
if [[ $needs_model == 1 && ! -f $MODEL/config.json ]]; then
  if [[ ${GEN:-0} == 1 ]]; then
    say "# generating $MODEL (m2-perf bf16)"
    start=$(date +%s.%N)
    "$BIN/afd-gen-checkpoint" --preset m2-perf --out "$MODEL" >"$OUTDIR/gen.log" 2>&1 ||
      { say "generation failed: $(tail -3 "$OUTDIR/gen.log")"; exit 1; }
    say "generated in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
  else
    say "no checkpoint at $MODEL (set GEN=1 to generate it)"; exit 1
  fi
fi
if [[ $needs_model == 1 ]]; then
  num_experts=$(python3 -c "import json; print(json.load(open('$MODEL/config.json'))['num_local_experts'])")
  vocab=$(python3 -c "import json; print(min(32000, json.load(open('$MODEL/config.json'))['vocab_size']))")
fi
say "# host: $ncpu cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); model $MODEL"

# Starts gateway + attention node + n expert nodes from a generated cluster.yaml; expert node i
# on EXP_CORES cores after the attention node's (n = 0: experts in the attention node). Sets
# gw_addr. $1 = n, $2 = micro-batches, $3 = min_micro_batch_tokens, $4 = attention cores list,
# $5 = replica choice (empty: experts split over the nodes; spread/pack: every node hosts all).
start_pinned_cluster() {
  local n=$1 mb=$2 minmb=$3 acores=$4 choice=${5:-} run=$OUTDIR/run-$1-$2-$3${5:+-$5} i per=$((num_experts / ($1 > 0 ? $1 : 1)))
  rm -rf "$run"; mkdir -p "$run"
  local port; port=$(free_port)
  gw_addr=127.0.0.1:$port
  attn_addr=unix:$run/attn0.sock
  {
    echo "model: $MODEL"
    echo "limits: {max_sequences: 64, kv_blocks: 2048, kv_block_tokens: 16, micro_batches: $mb, min_micro_batch_tokens: $minmb, replica_choice: ${choice:-spread}, min_tile_prompt_tokens: ${MIN_TILE_PROMPT:-0}}"
    echo "deadlines: {expert_call_ms: 60000, startup_timeout_ms: 300000}"
    echo "gateways:"
    echo "  - {name: gw0, address: '$gw_addr', threads: 1}"
    echo "attention_nodes:"
    echo "  - {name: attn0, address: 'unix:$run/attn0.sock', threads: $(echo "$acores" | tr ',' '\n' | wc -l)}"
    ((n > 0)) && echo "expert_nodes:"
    for ((i = 0; i < n; ++i)); do
      local last=$(((i + 1) * per - 1))
      ((i == n - 1)) && last=$((num_experts - 1))
      local hosted="$((i * per))-$last"
      [[ -n $choice ]] && hosted=all
      echo "  - {name: expert$i, address: 'unix:$run/expert$i.sock', threads: $EXP_CORES, experts: \"$hosted\"}"
    done
  } >"$run/cluster.yaml"
  for ((i = 0; i < n; ++i)); do
    taskset -c "$(cores $((ATT_CORES + i * EXP_CORES)) "$EXP_CORES")" "$BIN/afd-expert-node" \
      --config "$run/cluster.yaml" --node "expert$i" >"$run/expert$i.log" 2>&1 &
    pids+=($!)
  done
  taskset -c "$acores" "$BIN/afd-attention-node" --config "$run/cluster.yaml" \
    --node attn0 >"$run/attn0.log" 2>&1 &
  pids+=($!)
  taskset -c "$acores" "$BIN/afd-gateway" --config "$run/cluster.yaml" \
    --node gw0 --no-http >"$run/gw0.log" 2>&1 &
  pids+=($!)
  for ((i = 0; i < n; ++i)); do wait_for "$run/expert$i.log" " ready:" || return 1; done
  wait_for "$run/attn0.log" " ready:" || return 1
  wait_for "$run/gw0.log" "gw0 ready" || return 1
  for ((i = 0; i < n; ++i)); do grep -h " ready:" "$run/expert$i.log" >>"$OUTDIR/ready.log"; done
  grep -h " ready:" "$run/attn0.log" >>"$OUTDIR/ready.log"
}

for phase in "${phases[@]}"; do
  case $phase in
  scaleout)
    say ""
    say "# scale-out: attention node + gateway on $ATT_CORES cores, expert nodes on $EXP_CORES cores each (disjoint), unix sockets; $CONC streams, $PROMPT-token prompts, $TOKENS new tokens each; experts $([[ ${REPLICAS:-0} == 1 ]] && echo "on every node (replicas, spread)" || echo "split over the nodes")"
    say "$(printf '%-30s %12s %12s %10s %14s' 'config' 'tok/s @1' "tok/s @$CONC" 'vs 1 node' 'ITL p50 @C')"
    base=""
    configs=()
    for n in $NODES; do configs+=("$n:2"); done
    [[ ${SPLIT:-1} == 1 ]] && configs+=("4:1")
    for cfg in "${configs[@]}"; do
      n=${cfg%%:*}; minmb=128; label="$n expert node(s)"
      [[ ${cfg##*:} == 1 ]] && { minmb=1; label="$n expert node(s), always split"; }
      ((ATT_CORES + n * EXP_CORES > ncpu)) && say "(only $ncpu cores: $n expert nodes share cores)"
      if ! start_pinned_cluster "$n" 2 "$minmb" "$(cores 0 "$ATT_CORES")" \
        "$([[ ${REPLICAS:-0} == 1 ]] && echo spread)"; then say "$n expert nodes: did not start"; stop_all; continue; fi
      log=$OUTDIR/e2e-$n-$minmb.txt
      e2e "$(cores 0 "$ATT_CORES")" "$gw_addr" "$CONC" "$log" "$attn_addr"
      t1=$(tok_s "$log" 1); tc=$(tok_s "$log" "$CONC"); itl=$(itl_p50 "$log" "$CONC")
      [[ -z $base ]] && base=$tc
      ratio=$(python3 -c "print(f'{float(\"${tc:-0}\") / float(\"${base:-1}\"):.2f}x')" 2>/dev/null)
      say "$(printf '%-30s %12s %12s %10s %14s' "$label" "${t1:-?}" "${tc:-?}" "$ratio" "${itl:-?}")"
      { echo "$label, $CONC streams: attention node steps"; step_table "$log"; } >>"$OUTDIR/steps.txt"
      stop_all
    done
    ;;
  twocore)
    say ""
    say "# all-in-one on 2 cores (taskset -c 0,1): in-process vs gateway + attention + 3 expert nodes"
    for b in 1 16; do
      taskset -c 0,1 "$BIN/afd-generate" --model "$MODEL" --prompt-ids "$prompt_ids" \
        --max-tokens "$TOKENS" --ignore-eos --threads 2 --batch "$b" >"$OUTDIR/gen-b$b.txt" 2>&1
      say "in-process batch $b: $(grep -E '^decode' "$OUTDIR/gen-b$b.txt")"
    done
    if start_pinned_cluster 0 1 128 0,1; then
      log=$OUTDIR/e2e-inprocess.txt
      e2e 0,1 "$gw_addr" 16 "$log"
      say "attention node, experts in process, via gateway: tok/s @1 $(tok_s "$log" 1) (ITL p50 $(itl_p50 "$log" 1)), @16 $(tok_s "$log" 16)"
    else
      say "attention node with in-process experts did not start"
    fi
    stop_all
    IFS=';' read -r -a variants <<<"$TWOCORE_VARIANTS"
    for variant in "${variants[@]}"; do
      name=${variant%% *}; extra=""
      [[ $variant == *" "* ]] && extra=${variant#* }
      run=$OUTDIR/up-$name; rm -rf "$run" "$OUTDIR/up-$name.log"
      port=$(free_port)
      # shellcheck disable=SC2086
      taskset -c 0,1 "$BIN/afd-up" --model "$MODEL" --experts 3 --no-prompt --port "$port" \
        --run-dir "$run" $extra >"$OUTDIR/up-$name.log" 2>&1 &
      pids+=($!)
      if ! wait_for "$OUTDIR/up-$name.log" "nodes are ready"; then say "afd-up ($name) did not start"; stop_all; continue; fi
      addr=$(awk '/gw0 +afd.v1.Gateway gRPC/ {print $4}' "$OUTDIR/up-$name.log")
      log=$OUTDIR/e2e-up-$name.txt
      e2e 0,1 "$addr" 16 "$log"
      say "afd-up 3 experts ($variant): tok/s @1 $(tok_s "$log" 1) (ITL p50 $(itl_p50 "$log" 1)), @16 $(tok_s "$log" 16) (ITL p50 $(itl_p50 "$log" 16))"
      grep -h " ready:" "$run"/logs/*.log | sed 's/^/    /' | tee -a "$RESULTS" >/dev/null
      stop_all
    done
    ;;
  replicas)
    say ""
    say "# replicas: 4 expert nodes on $EXP_CORES cores each (disjoint), every node hosting every expert; $CONC streams"
    say "$(printf '%-30s %12s %12s %14s %14s' 'replica_choice' 'tok/s @1' "tok/s @$CONC" 'ITL p50 @1' 'ITL p50 @C')"
    for choice in spread pack; do
      if ! start_pinned_cluster 4 2 128 "$(cores 0 "$ATT_CORES")" "$choice"; then say "$choice: did not start"; stop_all; continue; fi
      log=$OUTDIR/e2e-replicas-$choice.txt
      e2e "$(cores 0 "$ATT_CORES")" "$gw_addr" "$CONC" "$log" "$attn_addr"
      say "$(printf '%-30s %12s %12s %14s %14s' "$choice" "$(tok_s "$log" 1)" "$(tok_s "$log" "$CONC")" "$(itl_p50 "$log" 1)" "$(itl_p50 "$log" "$CONC")")"
      { echo "replicas, $choice, $CONC streams: attention node steps"; step_table "$log"; } >>"$OUTDIR/steps.txt"
      stop_all
    done
    ;;
  roundtrip)
    say ""
    say "# single-token round trip, 2 cores (taskset -c 0,1)"
    taskset -c 0,1 "$BIN/expert_roundtrip_bench" --model "$TINY" --iterations 5000 2>&1 |
      tail -4 | tee -a "$RESULTS"
    taskset -c 0,1 "$BIN/expert_roundtrip_bench" --model "$MODEL" --iterations 300 2>&1 |
      tail -4 | tee -a "$RESULTS"
    ;;
  contended)
    say ""
    pair=$(cores 0 2)
    say "# afd-generate batch 1, 64 tokens, taskset -c $pair; tok/s and median ms/step"
    binaries=("$BIN/afd-generate")
    [[ -n ${OLD_GENERATE:-} ]] && binaries=("$OLD_GENERATE" "$BIN/afd-generate")
    second=$(cores 1 1)
    for load in alone busy; do
      busy_pid=""
      if [[ $load == busy ]]; then
        taskset -c "$second" bash -c 'while :; do :; done' &
        busy_pid=$!
        pids+=("$busy_pid")  # stopped on exit too
      fi
      for ((i = 0; i < ${RUNS:-4}; ++i)); do
        for b in "${binaries[@]}"; do
          line=$(taskset -c "$pair" "$b" --model "$MODEL" --prompt-ids 1,2,3,4 \
            --max-tokens 64 --ignore-eos 2>&1 | grep '^decode:')
          say "$load $(basename "$b") $(echo "$line" |
            sed -E 's/.*= ([0-9.]+) tokens.*median ([0-9.]+).*/\1 tok\/s, median \2 ms/')"
        done
      done
      [[ -n $busy_pid ]] && { kill "$busy_pid"; wait "$busy_pid" 2>/dev/null; }
    done
    ;;
  clock)
    say ""
    "$BIN/clock_bench" --per-core --seconds="${CLOCK_SECONDS:-1}" 2>&1 | tee -a "$RESULTS"
    ;;
  *)
    say "unknown phase $phase (scaleout, twocore, roundtrip, replicas, contended, clock)"
    ;;
  esac
done
[[ -f $OUTDIR/ready.log ]] && { say ""; say "# node ready lines (load time, RSS)"; sort -u "$OUTDIR/ready.log" | tee -a "$RESULTS"; }
