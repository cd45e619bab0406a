#!/usr/bin/env bash
# The GPU measurement (issue "GPU figures"), one command on a machine with one NVIDIA GPU,
# Python 3.12, JAX with CUDA and PyTorch, but no TensorFlow, Keras or Snakemake:
#
#   here (with internet), once:   bash bench/gpu_run.sh --prepare
#       pip-downloads the wheels of bench/gpu_wheels.txt (cp312, manylinux, --no-deps) into
#       the git-ignored .whl/ and copies ../shared/reference/gpu_anchor.py into the
#       git-ignored .ref/ (it is not ours to commit);
#   there (carry .whl and .ref):  bash bench/gpu_run.sh
#       installs the wheels into /tmp/site, then, each under its own time limit and the
#       whole under GPU_RUN_BUDGET_S (default 540 s; the first model's references and
#       throughput, the grids and the backup first, the other models while time is left), writes under $OUT:
#         env.txt              GPU, driver, versions
#         refs.jsonl           gpu_anchor.py torch_ref and keras_jax, batch 128, per model
#         throughput.jsonl     bench/train_throughput.py (JAX, bf16, batch 128, full network)
#         grid_share1.json     bench/grid.py, one job per GPU          (train.jobs_per_gpu: 1)
#         grid_shareN.json     bench/grid.py, GRID_JOBS_PER_GPU jobs per GPU (default 4)
#         backup.txt           bench/epoch_backup.py at 224 px
#         gpu_run.log          everything printed
#   here, without a GPU:          bash bench/gpu_run.sh --cpu-smoke
#       the same steps at tiny sizes on CPU (no references: no torch here), to check the script.
#
# Knobs (environment): GPU_RUN_MODELS (default "resnet50 vgg16 inceptionv3 mobilenetv2"),
# GPU_RUN_PARTS (default "refs throughput grid backup"), GRID_BACKBONES (default
# "resnet50:224": the real config's four backbones do not fit the budget
# twice; say so when quoting), GRID_JOBS_PER_GPU (4), GPU_RUN_BUDGET_S (540).
set -u -o pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
    mkdir -p .whl .ref
    for pin in $(grep -v '^#' bench/gpu_wheels.txt); do
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$pin" 2>/dev/null \
        || "$PY" -m pip wheel -q --no-deps -w .whl "$pin" \
        || { echo "no wheel for $pin"; exit 1; }  # sdist only (pure Python): built here
    done
    cp "${CONVSCOPE_SHARED:-../shared}/reference/gpu_anchor.py" .ref/ || { echo "set CONVSCOPE_SHARED to the shared folder"; exit 1; }
    echo "wheels: $(ls .whl | wc -l) files, $(du -sh .whl | cut -f1); reference: .ref/gpu_anchor.py"
    exit 0
fi

SMOKE=0
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
OUT=${OUT:-$REPO/test-artifacts/gpu_run}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_run.log") 2>&1
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
START=$(date +%s)
BUDGET=${GPU_RUN_BUDGET_S:-540}
MODELS=${GPU_RUN_MODELS:-resnet50 vgg16 inceptionv3 mobilenetv2}
PARTS=${GPU_RUN_PARTS:-refs throughput grid backup}
GRID_BACKBONES=${GRID_BACKBONES:-resnet50:224}
SHARE=${GRID_JOBS_PER_GPU:-4}

if [ $SMOKE = 0 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$REPO PATH=/tmp/site/bin:$PATH
else
    export PYTHONPATH=$REPO
    MODELS=alexnet
fi

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# step NAME LIMIT_S CMD...: run CMD under min(LIMIT_S, what is left of the budget); skip if < 20 s left.
step() {
    local name=$1 limit=$2; shift 2
    local l; l=$(left)
    if [ "$l" -lt 20 ]; then echo "=== $name: SKIPPED (budget: ${l} s left)"; return; fi
    [ "$l" -lt "$limit" ] && limit=$l
    echo "=== $name (limit ${limit} s, $(( $(date +%s) - START )) s in)"
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    [ $rc != 0 ] && echo "=== $name: exit $rc"
    return 0
}
has() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }

{
    date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for m in ("jax", "jaxlib", "keras", "torch", "torchvision", "snakemake", "numpy"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:  # noqa: BLE001 - a report line, not a failure
        print(m, "missing:", type(e).__name__)
try:
    import jax
    print("jax devices", jax.devices())
except Exception as e:  # noqa: BLE001
    print("jax devices: none", e)
EOF
} | tee "$OUT/env.txt"

size_of() { case $1 in inceptionv3) echo 299;; alexnet) echo 32;; *) echo 224;; esac; }

refs_and_throughput() {  # MODEL...: the references and our training path, model by model
    for m in "$@"; do
        s=$(size_of "$m")
        if has refs && [ $SMOKE = 0 ]; then
            step "reference torch_ref $m" 150 "$PY" .ref/gpu_anchor.py torch_ref "$m" 128 | tee -a "$OUT/refs.jsonl"
            step "reference keras_jax $m" 120 "$PY" .ref/gpu_anchor.py keras_jax "$m" 128 | tee -a "$OUT/refs.jsonl"
        fi
        if has throughput; then
            if [ $SMOKE = 0 ]; then args=(--batch 128 --steps 30 --epochs 3); else args=(--batch 8 --steps 2 --epochs 2 --threads 2); fi
            step "train_throughput $m@$s" 150 "$PY" bench/train_throughput.py --backbone "$m" --size "$s" "${args[@]}" \
                --backend jax --no-jpeg --no-fixed-cost --augment none --json "$OUT/throughput_$m.json"
            [ -f "$OUT/throughput_$m.json" ] && "$PY" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' \
                "$OUT/throughput_$m.json" >> "$OUT/throughput.jsonl" && rm "$OUT/throughput_$m.json"
        fi
    done
}

# The first model, then the grid and the backup, then the other models while the budget lasts.
# shellcheck disable=SC2086
set -- $MODELS
FIRST=$1; shift; REST="$*"
refs_and_throughput "$FIRST"

if has grid; then
    if [ $SMOKE = 0 ]; then
        # shellcheck disable=SC2206
        gargs=(--backend jax --gpu --threads 3 --cores "$(nproc)" --backbones $GRID_BACKBONES
               --strategies finetune features)
        glimit=240
    else
        gargs=(--small --backend jax --cores 2)
        SHARE=2
        glimit=300
    fi
    for n in 1 "$SHARE"; do
        # Each grid runs in a fresh temporary results tree, and with it a fresh JAX compilation
        # cache (results/cache/jax): the second grid does not reuse the first's programs.
        step "grid jobs_per_gpu=$n" "$glimit" \
            "$PY" bench/grid.py "${gargs[@]}" --jobs-per-gpu "$n" --json "$OUT/grid_share$n.json"
    done
fi

if has backup; then
    if [ $SMOKE = 0 ]; then bargs=(--backbone resnet50 --size 224 --batch 32 --steps 20 --epochs 6);
    else bargs=(--backbone alexnet --size 32 --batch 8 --steps 2 --epochs 3); fi
    step "epoch_backup" 150 "$PY" bench/epoch_backup.py "${bargs[@]}" --backend jax | tee "$OUT/backup.txt"
fi
# shellcheck disable=SC2086
refs_and_throughput $REST
echo "=== done in $(( $(date +%s) - START )) s; files in $OUT:"; ls -la "$OUT"
