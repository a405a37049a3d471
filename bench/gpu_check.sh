#!/usr/bin/env bash
# The one script to run on a GPU machine (DESIGN.md section 7).
#
#   bash bench/gpu_check.sh [LOGDIR]        (default LOGDIR: bench/results/latest)
#
# Works offline: installs this checkout without dependencies (CuPy, Numba, numba-cuda,
# PyTorch and pytest must already be there), prints the versions and the card, runs the
# gpu-marked tests, the convolution and training-step benchmarks at the DCGAN shapes, and
# ~300 training iterations on the embedded digits. Writes at most 8 files into LOGDIR.
# Each stage has its own time limit, and the limits add up to under 8 minutes.
set -u
cd "$(dirname "$0")/.."
LOGDIR=${1:-bench/results/latest}
mkdir -p "$LOGDIR"
LOG="$LOGDIR/gpu_check.log"
: > "$LOG"
START=$(date +%s)
status=0

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log everything, remember failures
    local name=$1 limit=$2; shift 2
    echo "=== $name ($(($(date +%s) - START))s elapsed; limit ${limit}s): $*" | tee -a "$LOG"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "=== $name FAILED (exit $rc)" | tee -a "$LOG"; status=1; }
}

stage install 30 python -m pip install --no-deps --no-build-isolation -q -e .
if [ "$status" -ne 0 ]; then
    echo "=== the project did not install: nothing else can run" | tee -a "$LOG"
    exit 1
fi
stage versions 15 python - <<'EOF'
import platform, subprocess
print("python", platform.python_version())
for mod in ("numpy", "numba", "numba_cuda", "cupy", "torch", "pytest", "hypothesis"):
    try:
        m = __import__(mod)
        print(mod, getattr(m, "__version__", "?"))
    except Exception as exc:
        print(mod, "MISSING", type(exc).__name__, exc)
try:
    import cupy
    print("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
    props = cupy.cuda.runtime.getDeviceProperties(0)
    print("device", props["name"], "SMs", props["multiProcessorCount"], "cc", props["major"], props["minor"])
except Exception as exc:
    print("cupy device query failed:", exc)
from numba import cuda
print("numba sees", [d.name for d in cuda.gpus] if cuda.is_available() else "no CUDA")
try:
    print(subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                          "--format=csv"], capture_output=True, text=True).stdout)
except OSError as exc:
    print("nvidia-smi not available:", exc)
EOF
# --continue-on-collection-errors: a CPU-only test module that cannot be imported here (say,
# hypothesis is missing) must not stop the gpu tests of the modules that can. --maxfail=20,
# not -x: one kernel version failing must not hide how the others and training fare; -v
# names each test as it ends, so a run stopped by the stage's limit still shows which failed.
stage gpu-tests 185 python -m pytest -m gpu -v -p no:cacheprovider --maxfail=20 --no-header -rfE \
    --continue-on-collection-errors
stage conv-bench 90 python bench/conv_bench.py --json "$LOGDIR/conv_bench.json"
# The training step with each family's newest kernel version (the defaults stay 1 until
# measured): eager, as a CUDA graph, and PyTorch eager FP32 and TF32; then without fusion.
stage train-bench 55 python bench/train_bench.py --device cuda --versions newest \
    --json "$LOGDIR/train_bench.json"
stage train-bench-unfused 25 python bench/train_bench.py --device cuda --versions newest --no-fuse \
    --no-torch --no-graph --json "$LOGDIR/train_bench_unfused.json"
# 300 iterations: the digits train split is 1437 images, 23 batches of 64 per epoch.
rm -rf "$LOGDIR/train_run"
stage train 70 python -m dcgan_cuda.train --device cuda --niter 13 --manualSeed 1 --no-progress \
    --outf "$LOGDIR/train_run"
if [ -d "$LOGDIR/train_run" ]; then
    last=$(ls "$LOGDIR"/train_run/fake_samples_epoch_*.png 2>/dev/null | tail -n 1)
    [ -n "$last" ] && cp "$last" "$LOGDIR/fake_samples_gpu.png"
    cp "$LOGDIR/train_run/loss_curve.png" "$LOGDIR/loss_curve_gpu.png" 2>/dev/null
    tail -n 1 "$LOGDIR/train_run/metrics.jsonl" >> "$LOG" 2>/dev/null
    rm -rf "$LOGDIR/train_run"
fi
echo "=== done in $(($(date +%s) - START))s, status $status" | tee -a "$LOG"
exit $status
