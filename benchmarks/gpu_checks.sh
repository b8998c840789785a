#!/usr/bin/env bash
# Issue 17's GPU checks as one prepared run for a lent GPU machine (the `device` tool), which
# has python3 with CUDA torch, h5py, scikit-image, click, rich, ... but no network and no
# pydantic/edt/platformdirs.
#
#   bash benchmarks/gpu_checks.sh wheels   # here (network to the package registries): .whl/
#   bash benchmarks/gpu_checks.sh run      # there, from the repository root, carry: [".whl"]
#
# `run` installs the carried wheels and unet-core (no deps, no network) into /tmp/site, then
# writes to $OUT (default /tmp/gpu-checks): the CUDA tests, benchmarks/gpu_throughput.py's
# patch-voxels/s (eager / compile / CUDA graphs; pipelined vs sequential fast mode) and P1/P2
# fast mode side by side with reference mode. At most 9 minutes (each step has its own time
# limit, so that a hang cannot eat the session's device time; one `run` call may take 10).
# `run --smoke` does the same with tiny sizes on whatever device there is (a CPU check here).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-checks}
mkdir -p "$OUT"
WHEELS=(pydantic==2.12.5 pydantic-core==2.41.5 annotated-types==0.8.0 typing-inspection==0.4.5
    edt==3.1.2 platformdirs==4.14.9)

case "${1:-}" in
wheels)
    grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
        -d .whl "${WHEELS[@]}"
    ;;
run)
    smoke=""
    [ "${2:-}" = "--smoke" ] && smoke="--smoke"
    if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || exit 1
        python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
            --target /tmp/site . || exit 1
        export PYTHONPATH=/tmp/site
    fi
    export PYTHONUNBUFFERED=1
    python3 -c "import torch, unet_core; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" \
        | tee "$OUT/device.txt"
    timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_forward_pipeline.py \
        tests/test_precision_auto.py 2>&1 | tail -5 | tee "$OUT/tests.txt"
    if [ -n "$smoke" ]; then
        timeout 300 python3 benchmarks/gpu_throughput.py --smoke 2>&1 | tee "$OUT/throughput.jsonl"
    else
        # each compiled variant compiles once per tile shape (~10 s each on an H200)
        timeout 360 python3 benchmarks/gpu_throughput.py --tiles 64,128 --batch 1,4 \
            --volume 256 --repeat 3 2>&1 | tee "$OUT/throughput.jsonl"
        timeout 120 python3 benchmarks/predict.py --device cuda --workloads P1,P2 \
            --modes reference,fast --repeat 1 2>&1 | tee "$OUT/predict.txt"
    fi
    ;;
*)
    echo "usage: bash benchmarks/gpu_checks.sh wheels | run [--smoke]" >&2
    exit 2
    ;;
esac
