#!/usr/bin/env bash
# The one script to run on a lent GPU machine: does training work there, how fast are our
# kernels against cuDNN and PyTorch, and does a short training run learn.
#
#   bash bench/gpu_check.sh [--dry-run] [LOGDIR]
#
# LOGDIR defaults to $OUT when that is set (a lent machine sends back only that folder, at
# most 8 files, and the last 12,000 characters of the console), else bench/results/latest.
# What is worth keeping lands in these files as it is measured, so a stage stopped by its
# time limit, or a machine taken back, leaves everything that came before it:
#   summary.txt               versions, libNVVM, PTX ISA, driver, card; each stage's outcome
#                             and time; the training run's last metrics line
#   gpu_check.log             everything every stage printed
#   gpu_tests.txt             one line per gpu test the moment it ends, with the reason if it failed
#   conv_bench.json           our convolutions against cuDNN, rewritten after every layer
#   train_bench.json          one training step: ours (direct launch, Numba's dispatcher, CUDA
#                             graph) against PyTorch, rewritten after every measurement
#   train_bench_unfused.json  the same step with batchnorm and its activation as two layers
#   fake_samples_gpu.png      the training run's last sample grid
#   extra.txt                 the optional stages, which run only in the time the others left:
#                             compute-sanitizer per kernel; Nsight Compute against the access model
# Scratch (the training run's folder) lives outside LOGDIR and is removed at the end.
#
# It works offline: it installs this checkout with no index and no dependencies (CuPy,
# Numba, numba-cuda, PyTorch and pytest must be there already). Each stage has a time
# limit, and the limits with their kill grace add up to at most BUDGET seconds (8 minutes,
# so that the script can run twice in a 15-minute lease); a test checks the sum.
#
# --dry-run, for a machine without a GPU (CI runs it): the same stages in the same order;
# those that need a GPU say "skipped: no GPU", the others run on the CPU at tiny sizes, so
# that the script, its files and its budget are checked without a GPU or a network.
set -u
cd "$(dirname "$0")/.."
DRY_RUN=0
if [ "${1:-}" = "--dry-run" ]; then DRY_RUN=1; shift; fi
LOGDIR=${1:-${OUT:-bench/results/latest}}
BUDGET=480      # seconds for the whole script
GRACE=5         # after a stage's limit, seconds between TERM and KILL
mkdir -p "$LOGDIR"
LOG="$LOGDIR/gpu_check.log"
SUMMARY="$LOGDIR/summary.txt"
EXTRA="$LOGDIR/extra.txt"
: > "$LOG"
: > "$SUMMARY"
rm -f "$LOGDIR/gpu_tests.txt"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export PYTHONUNBUFFERED=1          # a stage killed at its limit keeps its last lines
export GPU_CHECK_OUTCOMES="$LOGDIR/gpu_tests.txt"
# No nvidia-nvvm wheel on the GPU machines: libNVVM comes from their CUDA toolkit.
if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda/nvvm ]; then export CUDA_HOME=/usr/local/cuda; fi
START=$(date +%s)
status=0
ALSO=/dev/null     # a stage's output also goes here (summary.txt, extra.txt)

stage() {  # stage NAME LIMIT COMMAND...: run within LIMIT seconds; output to the log, outcome to the summary
    local name=$1 limit=$2; shift 2
    local t0 rc outcome
    t0=$(date +%s)
    echo "=== $name ($((t0 - START))s elapsed; limit ${limit}s): $*" | tee -a "$LOG"
    timeout --kill-after="$GRACE" "$limit" "$@" 2>&1 | tee -a "$LOG" "$ALSO"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) outcome=ok ;;
        124|137) outcome="STOPPED at its limit" ;;
        *) outcome="FAILED (exit $rc)" ;;
    esac
    [ "$rc" -eq 0 ] || status=1
    printf '%-20s %-22s %4ss\n' "$name" "$outcome" "$(($(date +%s) - t0))" >> "$SUMMARY"
    echo "=== $name: $outcome" | tee -a "$LOG"
    return "$rc"
}

skipped() {  # skipped NAME WHY
    printf '%-20s skipped: %s\n' "$1" "$2" >> "$SUMMARY"
    echo "=== $1: skipped: $2" | tee -a "$LOG"
}

gpu_stage() {  # like stage, for a stage that only means something on a GPU
    if [ "$DRY_RUN" = 1 ]; then skipped "$1" "no GPU (dry run)"; else stage "$@"; fi
}

optional_stage() {  # optional_stage NAME MOST COMMAND...: a GPU stage given what is left of the budget, up to MOST
    local name=$1 most=$2 left; shift 2
    left=$((BUDGET - ($(date +%s) - START) - GRACE))
    [ "$left" -lt "$most" ] || left=$most
    if [ "$DRY_RUN" = 1 ]; then skipped "$name" "no GPU (dry run)"
    elif [ "$left" -lt 30 ]; then skipped "$name" "only ${left}s of the budget left"
    else stage "$name" "$left" "$@"; fi
}

if [ "$DRY_RUN" = 1 ]; then
    INSTALL=(python3 -m pip install --dry-run)
    VERSIONS=(--no-gpu-ok)
    BENCH_STEP=(--device cpu --batch 4 --image-size 16 --ngf 4 --ndf 4 --steps 1 --warmup 0 --no-torch)
    TRAIN=(--device cpu --imageSize 16 --ngf 8 --ndf 8 --nz 16 --batchSize 16 --max-images 64 --niter 1)
else
    INSTALL=(python3 -m pip install)
    VERSIONS=()
    BENCH_STEP=(--device cuda --versions newest)
    # 300 iterations: the digits train split is 1437 images, 23 batches of 64 per epoch.
    TRAIN=(--device cuda --niter 13)
fi
# The gpu tests, each outcome written by bench/pytest_outcomes.py the moment the test ends.
# --continue-on-collection-errors: a CPU-only module that cannot be imported here (say,
# hypothesis is missing) must not stop the gpu tests of the others.
GPU_TESTS=(env "PYTHONPATH=bench${PYTHONPATH:+:$PYTHONPATH}" python3 -m pytest -m gpu -p pytest_outcomes
           -p no:cacheprovider -v --no-header -rfE --continue-on-collection-errors)

ALSO=$SUMMARY
stage install 20 "${INSTALL[@]}" --no-index --no-deps --no-build-isolation -q -e . \
    || { echo "=== the project did not install: nothing else can run" | tee -a "$LOG"; exit 1; }
# Versions, libNVVM, PTX ISA, driver and card, then one of our kernels on the GPU: if that
# cannot run (exit 3), every later stage would only fail, so the script stops here.
stage versions 30 python3 bench/gpu_versions.py "${VERSIONS[@]}"
if [ "$?" -eq 3 ]; then
    echo "=== our kernels cannot run on this machine (see above): stopping" | tee -a "$LOG" "$SUMMARY"
    cat "$SUMMARY"
    exit 1
fi
ALSO=/dev/null
# First the few tests that say whether training works on a GPU at all (no CuPy math in a
# step, GPU step = NumPy step, direct launch = Numba's, CUDA graph = eager, determinism,
# resume); then every kernel version against its reference at the DCGAN shapes, with no
# cap on failures, so one broken version fails its own cases and no others.
stage gpu-training 75 "${GPU_TESTS[@]}" -k "not kernel_matches_reference"
stage gpu-kernels 115 "${GPU_TESTS[@]}" -k "kernel_matches_reference"
gpu_stage conv-bench 85 python3 bench/conv_bench.py --json "$LOGDIR/conv_bench.json"
# The training step with each family's newest kernel version (the defaults stay 1 until
# measured): eager both ways, as a CUDA graph, and PyTorch eager FP32 and TF32; then without fusion.
stage train-bench 50 python3 bench/train_bench.py "${BENCH_STEP[@]}" --json "$LOGDIR/train_bench.json"
stage train-bench-unfused 20 python3 bench/train_bench.py "${BENCH_STEP[@]}" --no-fuse --no-torch --no-graph \
    --json "$LOGDIR/train_bench_unfused.json"
stage train 40 python3 -m dcgan_cuda.train "${TRAIN[@]}" --manualSeed 1 --no-progress --outf "$SCRATCH/train_run"
last_grid=$(ls "$SCRATCH"/train_run/fake_samples_epoch_*.png 2>/dev/null | tail -n 1)
[ -n "$last_grid" ] && cp "$last_grid" "$LOGDIR/fake_samples_gpu.png"
last_metrics=$(tail -n 1 "$SCRATCH/train_run/metrics.jsonl" 2>/dev/null)
echo "training run, last metrics line: ${last_metrics:-none}" | tee -a "$LOG" "$SUMMARY"

ALSO=$EXTRA
: > "$EXTRA"
optional_stage sanitizer 120 python3 bench/sanitizer_report.py --tools memcheck racecheck
# The access profiler's figures (traced in the simulator beforehand, bench/results/cpu/ncu_model.json)
# against Nsight Compute's for the same launches; its table and JSON go into extra.txt.
optional_stage ncu 90 python3 bench/ncu_compare.py --model bench/results/cpu/ncu_model.json --out "$SCRATCH/ncu"
cat "$SCRATCH"/ncu/ncu_compare.md "$SCRATCH"/ncu/ncu_compare.json >> "$EXTRA" 2>/dev/null
echo "=== done in $(($(date +%s) - START))s of a ${BUDGET}s budget, status $status" | tee -a "$LOG" "$SUMMARY"
echo
cat "$SUMMARY"
exit $status
