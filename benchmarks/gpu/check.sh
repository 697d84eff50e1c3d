#!/usr/bin/env bash
# The one GPU check of fusedsnn: everything a short GPU lease should run, in one command.
#
#   benchmarks/gpu/check.sh            on a CUDA machine (H100/H200), no network needed
#   benchmarks/gpu/check.sh --dry-run  the same steps on CPU at tiny sizes through Triton's
#                                      interpreter (CI runs this; under 2 minutes)
#
# Phases, each under `timeout` (real run: 20 s + 40 s + 180 s + 110 s + 110 s + 30 s, 8.2 minutes
# at most, and 90 s for the modes phase: 9.7 minutes; limits, not expected times: the first H200
# run took 3.3 minutes in all, without the memory phase, the H100 run with it 4.6 minutes):
#   1. environment: GPU, driver, Python, torch, triton versions
#   2. install: the project into a throwaway folder with no network (no build isolation, no
#      dependency resolution), and snnTorch 1.0.0 from a wheel in .wheels/ (git-ignored) unless
#      it is already importable. Get the wheel, on any machine with a package registry:
#          pip download snntorch==1.0.0 --no-deps -d .wheels
#      snnTorch 1.0.0 declares no dependencies; it imports torch, numpy, pandas and matplotlib,
#      all present on the GPU image. Optionally SpikingJelly 2.0 (a baseline) the same way:
#          pip download spikingjelly==2.0.0 loguru --no-deps -d .wheels
#   3. tests: `pytest -m cuda` (every test marked cuda; in the dry run their interpreter twins,
#      `pytest tests/cuda -m "not cuda"`)
#   4. bench: `fusedsnn bench --sections gpu_targets,throughput,step_modes,linear_lif,shd,net3,open_neuromorphic`
#      (dry run: the CPU's quick sizes). net3: the 3-layer 256-512-512-10 training step at T=50, B=32;
#      open_neuromorphic: Linear(16384, 16384) + LIF, T=500, B=16, at most 5 rounds (not yet run on a
#      GPU: the 40 s added to this phase's limit for the two are an estimate, about 30 s expected)
#   5. memory: `fusedsnn bench --sections memory` at its full sizes (T in {25, 500, 2000}, batch
#      32: peak max_memory_allocated and time of fused-chunked, fused-lean, fused, snnTorch)
#   6. profile: benchmarks/gpu/where_time_goes.py (kernel tables, host cost per call, variants)
#   7. modes: benchmarks/gpu/step_modes.py (DSNN/CSNN step eager vs fs.cuda_graph_step; DSNN under
#      torch.compile default and reduce-overhead, generic custom op vs triton_op), step_modes.json;
#      real run: 90 s more
#
# Results go to $OUT (default: ./gpu-check-out), at most 6 small files:
#   check.log  summary.json  pytest.xml  bench.tar.gz (the bench's JSON, CSV, plots, environment)
#   memory.tar.gz (the same for the memory section)  profile.json
# A phase that fails is recorded in summary.json and the next phase still runs; the exit status
# is that of the first failed phase (0 when all passed).
set -uo pipefail

SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
REPO=$(cd "$(dirname "$0")/../.." && pwd)
# A phase runs as this script again (so that `timeout` can stop it with all its children), told
# which phase by CHECK_PHASE; the main run passes DRY_RUN, OUT and WORK the same way.
DRY_RUN=${CHECK_DRY_RUN:-0}
case "${1:-}" in
  --dry-run) DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 64 ;;
esac
WHEELS=${FUSEDSNN_WHEELS:-$REPO/.wheels}
PYTHON=${PYTHON:-python3}

if [[ $DRY_RUN == 1 ]]; then
  export TRITON_INTERPRET=1
  DEVICE=cpu
  T_ENV=30 T_INSTALL=120 T_TESTS=120 T_BENCH=120 T_MEMORY=60 T_PROFILE=60
  TEST_ARGS=(tests/cuda -m "not cuda")
  PROFILE_ARGS=(--device cpu --sections leaky,host)
  BENCH_ARGS=(--device cpu --quick --repeats 1 --sections gpu_targets,step_modes,shd,linear_lif,net3,open_neuromorphic)
  MEMORY_ARGS=(--device cpu --quick --repeats 1 --sections memory)
  T_MODES=60 MODES_ARGS=(--device cpu --compile default)
else
  unset TRITON_INTERPRET
  DEVICE=cuda
  # H100 run with the memory phase: tests 137 s, bench 37 s (before net3 and open_neuromorphic),
  # memory 68 s, profile 15 s.
  T_ENV=20 T_INSTALL=40 T_TESTS=180 T_BENCH=110 T_MEMORY=110 T_PROFILE=30  # 8.2 minutes at most
  TEST_ARGS=(tests -m cuda)
  PROFILE_ARGS=(--device cuda)
  BENCH_ARGS=(--device cuda --quick --repeats 20
              --sections gpu_targets,throughput,step_modes,linear_lif,shd,net3,open_neuromorphic)
  # Full sizes, 10 repeats (3 at T=2000): snnTorch's step loop at T=2000 is the long pole.
  MEMORY_ARGS=(--device cuda --repeats 10 --sections memory)
  T_MODES=90 MODES_ARGS=(--device cuda --compile default,reduce-overhead)
fi
export PYTHONUNBUFFERED=1

FIRST_FAILURE=0
PHASES=()
phase() {  # phase NAME SECONDS: run function NAME under timeout, log status and duration
  local name=$1 limit=$2
  echo
  echo "=== $name (limit ${limit}s) $(date -u +%H:%M:%S) ==="
  local start=$SECONDS
  CHECK_PHASE=$name timeout --kill-after=10 "$limit" bash "$SELF"
  local rc=$?
  local took=$((SECONDS - start))
  [[ $rc == 124 || $rc == 137 ]] && echo "!!! $name ran past ${limit}s and was stopped"
  echo "=== $name: exit $rc after ${took}s ==="
  PHASES+=("{\"phase\": \"$name\", \"exit\": $rc, \"seconds\": $took, \"limit_s\": $limit}")
  [[ $rc != 0 && $FIRST_FAILURE == 0 ]] && FIRST_FAILURE=$rc
  write_summary  # after every phase, so that a run stopped from outside still leaves one
  return $rc
}

write_summary() {
  local joined
  joined=$(IFS=,; echo "${PHASES[*]}")
  printf '{"dry_run": %s, "device": "%s", "date": "%s", "phases": [%s]}\n' \
    "$DRY_RUN" "$DEVICE" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$joined" > "$OUT/summary.json"
}

environment() {
  echo "repo: $REPO ($(git -C "$REPO" describe --always --dirty --abbrev=12 2>/dev/null || echo 'no git'))"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem \
    --format=csv
  "$PYTHON" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"gpu {p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB")
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: not installed")
EOF
}

install() {
  # No C++ build here: CUDA runs the Triton kernels, and compiling the host library's vector
  # clones took the whole minute on the first H200 run.
  FUSEDSNN_BUILD_HOST=0 "$PYTHON" -m pip install --quiet --no-build-isolation --no-deps --no-index \
    --target "$SITE" "$REPO" || return 1
  if PYTHONPATH=$SITE "$PYTHON" -c "import snntorch" 2>/dev/null; then
    echo "snnTorch: already importable ($(PYTHONPATH=$SITE "$PYTHON" -c 'import snntorch; print(snntorch.__file__)'))"
  else
    local wheel
    wheel=$(ls "$WHEELS"/snntorch-1.0.0-*.whl 2>/dev/null | head -n1)
    if [[ -z $wheel ]]; then
      echo "snnTorch is not installed and no wheel is in $WHEELS. On a machine with a registry run:"
      echo "    pip download snntorch==1.0.0 --no-deps -d $WHEELS"
      return 2
    fi
    "$PYTHON" -m pip install --quiet --no-deps --no-index --target "$SITE" "$wheel" || return 1
  fi
  # SpikingJelly 2.0 (a baseline of gpu_targets; optional: without it its rows are not run) from
  # its wheel with --no-deps: its declared dependencies (torchvision, torchaudio, tensorboard,
  # SciencePlots, h5py) would pull other torch wheels; importing its LIF needs only loguru.
  if PYTHONPATH=$SITE "$PYTHON" -c "import spikingjelly.activation_based.neuron" 2>/dev/null; then
    echo "SpikingJelly: already importable"
  else
    local sj loguru
    sj=$(ls "$WHEELS"/spikingjelly-2.*.whl 2>/dev/null | head -n1)
    loguru=$(ls "$WHEELS"/loguru-*.whl 2>/dev/null | head -n1)
    if [[ -n $sj && -n $loguru ]]; then
      "$PYTHON" -m pip install --quiet --no-deps --no-index --target "$SITE" "$sj" "$loguru" \
        && PYTHONPATH=$SITE "$PYTHON" -c "import spikingjelly.activation_based.neuron" \
        && echo "SpikingJelly: installed from $sj" \
        || echo "SpikingJelly: the wheel did not install or import; its baseline rows are skipped"
    else
      echo "SpikingJelly: no wheel in $WHEELS (optional; its baseline is skipped). To add it:"
      echo "    pip download spikingjelly==2.0.0 loguru --no-deps -d $WHEELS"
    fi
  fi
  # The installed package, imported from outside the source tree.
  (cd "$WORK" && PYTHONPATH=$SITE "$PYTHON" -c \
    "import fusedsnn, snntorch; print('fusedsnn from', fusedsnn.__file__); print('snntorch', snntorch.__version__)")
}

tests() {
  local extra=()
  # pytest-xdist (on the GPU image) spreads Triton's compilations over the CPU cores.
  [[ $DRY_RUN == 0 ]] && "$PYTHON" -c "import xdist" 2>/dev/null && extra=(-n 8)
  (cd "$REPO" && PYTHONPATH=$SITE "$PYTHON" -m pytest "${TEST_ARGS[@]}" -q -rs --durations=20 \
    -p no:cacheprovider --junitxml="$OUT/pytest.xml" "${extra[@]}")
}

bench() {
  (cd "$WORK" && PYTHONPATH=$SITE "$PYTHON" -m fusedsnn.cli bench "${BENCH_ARGS[@]}" --out "$WORK/bench")
  local rc=$?
  [[ -d $WORK/bench ]] && tar -czf "$OUT/bench.tar.gz" -C "$WORK" bench
  return $rc
}

memory() {
  (cd "$WORK" && PYTHONPATH=$SITE "$PYTHON" -m fusedsnn.cli bench "${MEMORY_ARGS[@]}" --out "$WORK/memory")
  local rc=$?
  [[ -d $WORK/memory ]] && tar -czf "$OUT/memory.tar.gz" -C "$WORK" memory
  return $rc
}

profile() {  # where the time goes: kernel tables, host cost per call (benchmarks/gpu/where_time_goes.py)
  (cd "$WORK" && PYTHONPATH=$SITE "$PYTHON" "$REPO/benchmarks/gpu/where_time_goes.py" "${PROFILE_ARGS[@]}" \
    --out "$OUT") 2>&1 | grep -v "USDT\|UserWarning\|warn("
}

modes() {  # the training step in the modes users run (benchmarks/gpu/step_modes.py)
  (cd "$WORK" && PYTHONPATH=$SITE "$PYTHON" "$REPO/benchmarks/gpu/step_modes.py" "${MODES_ARGS[@]}" --out "$OUT")
}

if [[ -n ${CHECK_PHASE:-} ]]; then
  OUT=$CHECK_OUT WORK=$CHECK_WORK SITE=$CHECK_WORK/site
  "$CHECK_PHASE"
  exit $?
fi

OUT=${OUT:-$REPO/gpu-check-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
SITE=$WORK/site
trap 'rm -rf "$WORK"' EXIT
export CHECK_DRY_RUN=$DRY_RUN CHECK_OUT=$OUT CHECK_WORK=$WORK
exec > >(tee "$OUT/check.log") 2>&1
TEE_PID=$!

echo "fusedsnn GPU check$([[ $DRY_RUN == 1 ]] && echo ' (dry run: CPU, interpreter, tiny sizes)') -> $OUT"
phase environment "$T_ENV"
if phase install "$T_INSTALL"; then
  phase tests "$T_TESTS"
  phase bench "$T_BENCH"
  phase memory "$T_MEMORY"
  phase profile "$T_PROFILE"
  phase modes "$T_MODES"
else
  echo "install failed: tests and bench not run"
fi
echo
cat "$OUT/summary.json"
# Let tee write the log's last lines before the caller collects $OUT.
exec >/dev/null 2>&1
wait "$TEE_PID" 2>/dev/null
exit $FIRST_FAILURE
