set -u
W=$(mktemp -d)
FUSEDSNN_BUILD_HOST=0 python3 -m pip install -q --no-build-isolation --no-deps --no-index --target $W/site . >/dev/null 2>&1 || echo "install failed"
python3 -m pip install -q --no-deps --no-index --target $W/site .wheels/snntorch-1.0.0-*.whl >/dev/null 2>&1
echo "=== tests $(date -u +%T)"
PYTHONPATH=$W/site timeout 100 python3 -m pytest -q -p no:cacheprovider -m cuda tests/cuda/test_memory_cuda.py 2>&1 | tail -4
echo "=== memory bench $(date -u +%T)"
(cd $W && PYTHONPATH=$W/site timeout 120 python3 -m fusedsnn.cli bench --device cuda --repeats 10 --sections memory --out $OUT/memory 2>&1 | tail -28)
echo "=== lean_where $(date -u +%T)"
PYTHONPATH=$W/site timeout 90 python3 benchmarks/gpu/lean_where.py --device cuda --out $OUT 2>&1 | grep -v "USDT\|warn" > $OUT/lean_where.log; tail -5 $OUT/lean_where.log
echo "=== end $(date -u +%T)"; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
