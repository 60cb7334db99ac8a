#!/usr/bin/env bash
# The GPU checks and benchmarks of one session, prepared to run in one call on a lent GPU machine (no network
# there, nothing of this repository installed, ../shared not beside it, at most 64 MiB carried).
#
#   bash benchmarks/gpu.sh pack   # here: .gpu/ (git-ignored) with what the run needs from ../shared, ~16 MB
#   bash benchmarks/gpu.sh run    # there, from the repository root, carrying .gpu; results under $OUT
#
# The run: tests/test_cuda.py (what only a GPU shows: exact resume with the CUDA generator, a run killed on the
# GPU, bfloat16 weights with float32 theta and optimiser, flex-attention prefix gradients, Fastfood across
# devices, several tasks in one pass), then benchmarks/multitask.py, step_time.py, fastfood.py and dtype.py on CUDA.
# SmolLM2's GGUF file (98 MB) is too large to carry: the benchmarks use a model of SmolLM2's exact shape (its
# config and tokenizer) with random weights, which costs what SmolLM2 costs. Each stage has its own time limit and
# its output lands in $OUT at once, so a stage that overruns leaves the others' results. About 10 minutes on an H200.
set -uo pipefail
cd "$(dirname "$0")/.."

TASKS="glue-sst2 ag_news trec emotion rotten_tomatoes tweet_eval-sentiment sms_spam glue-mrpc paws scitail emo
ethos-race glue-rte lama-trex lama-google_re lama-conceptnet web_questions"

pack() {
    local shared=${TASKSPACE_SHARED:-../shared}
    rm -rf .gpu && mkdir -p .gpu/shared/models .gpu/shared/data/crossfit .gpu/smol-shape
    cp -r "$shared/models/stories260K" .gpu/shared/models/
    for t in $TASKS; do
        mkdir -p ".gpu/shared/data/crossfit/$t"
        cp "$shared/data/crossfit/$t/${t}_16_100_"* ".gpu/shared/data/crossfit/$t/"
    done
    local smol
    smol=$(python -c "from taskspace.backbones import smollm2; print(smollm2.smollm2_folder())") || return 1
    cp "$smol"/config.json "$smol"/generation_config.json "$smol"/tokenizer.json "$smol"/tokenizer_config.json \
        .gpu/smol-shape/
    grep -qxF '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    du -sh .gpu
}

run() {
    local out=${OUT:-/tmp/taskspace-gpu}
    mkdir -p "$out"
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TASKSPACE_SHARED="$PWD/.gpu/shared" \
        TASKSPACE_CACHE=/tmp/taskspace-cache
    local data="$PWD/.gpu/shared/data/crossfit" model=/tmp/smol-shape
    { nvidia-smi -L; python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee "$out/device.txt"
    python3 - "$model" <<'EOF' 2>&1 | tee "$out/model.txt"
import shutil, sys
import torch
from transformers import AutoConfig, AutoModelForCausalLM
config = AutoConfig.from_pretrained(".gpu/smol-shape")
torch.manual_seed(0)
AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(sys.argv[1])
for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    shutil.copy(f".gpu/smol-shape/{name}", sys.argv[1])
print("random weights of SmolLM2's shape in", sys.argv[1])
EOF
    timeout 240 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py 2>&1 | tee "$out/test_cuda.txt"
    cd benchmarks || return 1
    timeout 120 python3 multitask.py --backbone "$model" --data-dir "$data" --steps 5 2>&1 | tee "$out/multitask.txt"
    timeout 100 python3 step_time.py --backbone "$model" --data-dir "$data" --steps 10 --warmup 3 \
        --methods prompt prefix lora adapter bitfit 2>&1 | tee "$out/step_time.txt"
    timeout 90 python3 fastfood.py --device cuda --max-log2 26 2>&1 | tee "$out/fastfood.txt"
    # the CUDA default dtype (bfloat16 where supported) is chosen from this: the time of float32 and bfloat16
    # (the random weights make the scores meaningless; the scores' drift is measured on the CPU with SmolLM2)
    timeout 150 python3 dtype.py --backbone "$model" --data-dir "$data" --backbone-opt device=cuda \
        --tasks glue-sst2 ag_news --data-seeds 100 --steps 30 --eval-every 15 --max-test-examples 50 2>&1 \
        | tee "$out/dtype.txt"
}

case "${1:-}" in
    pack) pack ;;
    run) run ;;
    *) echo "usage: bash benchmarks/gpu.sh pack|run" >&2; exit 2 ;;
esac
