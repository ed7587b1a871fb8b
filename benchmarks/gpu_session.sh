#!/usr/bin/env bash
# One device call for the speed issue: the plain PyTorch reference loops, then the project's own loops, in the
# same call on the same card, each step bounded so the whole call ends inside its budget. Prepare first (here):
#     make gpu-bundle                       # .gpu-bundle/: MiniLM fp16, CLINC150, the reference loops (~47 MiB)
# then run it with the device tool (repository root, carry .gpu-bundle), e.g.:
#     run(command="bash benchmarks/gpu_session.sh", carry=[".gpu-bundle"], timeout_s=570)
# Everything printed lands in $OUT/session.log; each step also writes its JSON to $OUT.
# BUDGET (seconds, default 540) is the time the steps may use together; later steps shrink or skip first.
# STEPS (default: the first seven, the full session) picks steps by name, e.g. a short follow-up call:
#     BUDGET=270 STEPS="reference throughput-eager precision-fp32 levers-precision clip-compiled" bash ...
# Order = importance: the baseline, eager throughput + evaluation, packing, levers on real CLINC150 batches
# (metrics with and without each lever), then the slow compiled rows.
set -u
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
exec > >(tee "$OUT/session.log") 2>&1
B=.gpu-bundle
PY=${PY:-python3}  # the GPU machine's python3 is its torch environment
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
BUDGET=${BUDGET:-540}
T0=$SECONDS
left() { echo $((BUDGET - (SECONDS - T0))); }
STEPS=${STEPS:-reference throughput-eager packing levers-minilm pageable-images throughput-compiled levers-bert-clinc}
step() { # step NAME MAX_SECONDS CMD...: run CMD for at most min(MAX, what is left); skip when < 20 s are left
  local name=$1 max=$2
  shift 2
  case " $STEPS " in *" $name "*) ;; *) return ;; esac
  local limit
  limit=$(left)
  [ "$limit" -gt "$max" ] && limit=$max
  if [ "$limit" -lt 20 ]; then
    echo "=== $name: skipped ($(left) s left)"
    return
  fi
  echo "=== $name (at most ${limit}s; $(left)s left) $(date +%T)"
  timeout --signal=INT --kill-after=10 "$limit" "$@"
  echo "=== $name: exit $? after $((SECONDS - T0))s in all"
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
[ -d "$B" ] || { echo "no $B: run make gpu-bundle here and carry .gpu-bundle"; exit 2; }

step reference 150 "$PY" "$B/reference_loops.py"
step throughput-eager 90 "$PY" benchmarks/gpu_throughput.py --compile off --out "$OUT/throughput_eager.json"
step packing 100 "$PY" benchmarks/gpu_packing.py sweeps/configs/clinc150-data.yaml \
  --data "$B/clinc150/data_full.json" --model "$B/minilm-fp16" --sizes 100 500 1000 2000 --seeds 0 1 \
  --workers 1 4 --out "$OUT/packing.json"
# Compiled trials compile afresh each (about a minute on a cold machine): two seeds keep the step inside its cap.
step levers-minilm 200 "$PY" benchmarks/levers.py sweeps/configs/clinc150-epochs.yaml \
  --data "$B/clinc150/data_full.json" --model "$B/minilm-fp16" --size 1000 --epochs 3 --seeds 0 1 \
  --variants bf16 fp32 bf16+cudagraphs bf16+compile --deadline-s 140 --out "$OUT/levers_minilm.json"
# Pinned vs pageable host->GPU copies on the image loops (Runtime.to_device): compare with throughput-eager's rows.
step pageable-images 60 "$PY" benchmarks/gpu_throughput.py --archs resnet clip --compile off --pageable \
  --out "$OUT/throughput_pageable.json"
step throughput-compiled 200 "$PY" benchmarks/gpu_throughput.py --compile reduce-overhead default \
  --deadline-s 120 --out "$OUT/throughput_compiled.json"
if [[ " $STEPS " == *" levers-bert-clinc "* ]] && [ "$(left)" -ge 45 ] && "$PY" benchmarks/gpu_bundle.py random-bert --to /tmp/bert-base-random >/dev/null 2>&1; then
  step levers-bert-clinc 90 "$PY" benchmarks/levers.py sweeps/configs/clinc150-epochs.yaml \
    --data "$B/clinc150/data_full.json" --model /tmp/bert-base-random --size 2000 --epochs 2 --seeds 0 \
    --batch-size 128 --variants bf16 bf16+cudagraphs --deadline-s 45 --out "$OUT/levers_bert_clinc.json"
fi
# Follow-up steps (not in the default STEPS): the precision question and CLIP's compiled row.
step precision-fp32 80 "$PY" benchmarks/gpu_throughput.py --archs bert clip --compile off --precision fp32 \
  --out "$OUT/throughput_fp32.json"
step levers-precision 80 "$PY" benchmarks/levers.py sweeps/configs/clinc150-epochs.yaml \
  --data "$B/clinc150/data_full.json" --model "$B/minilm-fp16" --size 1000 --epochs 3 --seeds 0 1 2 \
  --variants bf16 fp32 --out "$OUT/levers_precision.json"
step clip-compiled 150 "$PY" benchmarks/gpu_throughput.py --archs clip --compile reduce-overhead \
  --out "$OUT/throughput_clip_compiled.json"
echo "=== done in $((SECONDS - T0))s"
