"""The all-to-all Poplar codelets (csrc/codelets/lif_all_to_all_codelets.cpp), compiled on the host
against the stub <poplar/Vertex.hpp> and driven as the IPU program of csrc/popart/lif_all_to_all_op.cpp
runs them: tiles own blocks of neurons (and of batch rows) for the whole sequence; per step every
tile runs its vertex with all its workers (the compute phase), then each tile's spikes (forward)
or recurrent-input gradients (backward) are copied to every tile of its batch block (the
exchange, after the sync). The emulation runs the phases in that order on one thread, which is
what the IPU's bulk-synchronous steps guarantee; each tile's fields are bound to its own copies,
so a vertex can only read what its tile holds.

Checked against fusedsnn's reference all-to-all op (``nn.Linear`` order, bit-identical to
snnTorch): the codelets sum ``W @ spk`` and ``G @ W`` in their own order, so float32 states and
gradients are compared within a tolerance, and spikes exactly wherever the pre-spike membrane is
clear of threshold by more than ``MARGIN``. Every output starts as NaN and every Output scratch
field is poisoned with NaN before each step, so an unwritten element, or a read of last step's
scratch, fails. Each worker is also run alone on a copy of its tile's buffers: no element may be
written by two workers, and every element of a step's fresh outputs by exactly one.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from fusedsnn import surrogate as S
from fusedsnn.backends.layout import surrogate_constants
from fusedsnn.backends.reference.all_to_all import lif_all_to_all_backward_reference, lif_all_to_all_forward_reference
from fusedsnn.spec import RECURRENCE_ALL_TO_ALL, RESET_CODES, LIFSpec, needs_prev_mem

from ...conftest import RESETS, assert_close_scaled, random_input

ROOT = Path(__file__).resolve().parents[3]
WORKERS = 6
MARGIN = 1e-4  # float32 rounding of a sum of ~N products of O(1) values, with room
MAX_FIELDS = 32


class _Fields(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p * MAX_FIELDS), ("size", ctypes.c_int64 * MAX_FIELDS)]


class _Scalars(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint) for n in ("steps", "batch", "reset", "immediate_reset", "surrogate",
                                             "need_prev_mem", "num_workers")] + \
               [(n, ctypes.c_float) for n in ("c0", "c1", "gsf")]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.fail("a C++ compiler is required to verify the codelets on the host")
    out = tmp_path_factory.mktemp("all_to_all_codelets") / "drive_all_to_all_codelets.so"
    stub = ROOT / "tests" / "backends" / "poplar" / "stub"
    cmd = [compiler, "-O1", "-std=c++17", "-ffp-contract=off", "-fPIC", "-shared", "-Wall", "-Werror",
           f"-I{stub}", str(stub / "drive_all_to_all_codelets.cpp"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lib = ctypes.CDLL(str(out))
    lib.drive_all_to_all_vertex.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Fields),
                                       ctypes.POINTER(_Scalars), ctypes.c_uint]
    lib.drive_all_to_all_vertex.restype = ctypes.c_int
    return lib


def _range(n: int, k: int, parts: int) -> tuple[int, int]:
    """fusedsnn::worker_range: contiguous, sizes differ by at most one."""
    base, extra = divmod(n, parts)
    begin = k * base + min(k, extra)
    return begin, begin + base + (1 if k < extra else 0)


@dataclass
class Tile:
    b0: int
    b1: int
    j0: int
    j1: int
    block: int  # batch block: the tiles that exchange with each other
    fields: dict


def _plan(B: int, N: int, neuron_blocks: int, batch_blocks: int) -> list[Tile]:
    tiles = []
    for bb in range(batch_blocks):
        b0, b1 = _range(B, bb, batch_blocks)
        for nb in range(neuron_blocks):
            j0, j1 = _range(N, nb, neuron_blocks)
            if b1 > b0 and j1 > j0:
                tiles.append(Tile(b0, b1, j0, j1, bb, {}))
    return tiles


def _nan(*shape) -> torch.Tensor:
    return torch.full(shape, float("nan"))


def _local(t, tile: Tile, time: bool) -> torch.Tensor:
    """The tile's block of a [T, B, N] (time) or [B, N] tensor, contiguous; empty if absent."""
    if t is None or t.numel() == 0:
        return torch.empty(0)
    return (t[:, tile.b0:tile.b1, tile.j0:tile.j1] if time else t[tile.b0:tile.b1, tile.j0:tile.j1]).contiguous()


def _bind(fields: list) -> _Fields:
    f = _Fields()
    for i, t in enumerate(fields):
        if t.numel():
            f.ptr[i] = t.data_ptr()
            f.size[i] = t.numel()
    return f


def _compute_phase(driver, forward: bool, synaptic: bool, tiles: list[Tile], order: list[str], writable: list[str],
                   fresh, scalars_of, check_ownership: bool) -> None:
    """Every tile runs its vertex with all its workers. With ``check_ownership``, each worker first
    runs alone on a copy of its tile's writable buffers, to find what it writes."""
    for tile in tiles:
        sc = scalars_of(tile)
        if check_ownership:
            writers = {name: torch.zeros(tile.fields[name].shape, dtype=torch.int32) for name in writable}
            for w in range(WORKERS):
                copy = dict(tile.fields)
                for name in writable:
                    copy[name] = tile.fields[name].clone()
                assert driver.drive_all_to_all_vertex(int(forward), int(synaptic), _bind([copy[n] for n in order]), sc, w) == 0
                for name in writable:
                    before, after = tile.fields[name], copy[name]
                    changed = ~((before == after) | (before.isnan() & after.isnan()))
                    writers[name] += changed.int()
            for name, count in writers.items():
                assert count.max() <= 1, f"{name}: elements written by more than one worker"
            for name, region in fresh(tile).items():
                assert (region(writers[name]) == 1).all(), f"{name}: not every element written by exactly one worker"
        for w in range(WORKERS):
            assert driver.drive_all_to_all_vertex(int(forward), int(synaptic), _bind([tile.fields[n] for n in order]), sc, w) == 0


def _exchange(tiles: list[Tile], source: str, dest: str) -> None:
    """After the sync: every tile receives its batch block's [Bt, N] row of `source` blocks."""
    for tile in tiles:
        peers = sorted((p for p in tiles if p.block == tile.block), key=lambda p: p.j0)
        tile.fields[dest].copy_(torch.cat([p.fields[source] for p in peers], dim=1))


FORWARD_FIELDS = ["step", "x", "weights", "bias", "spkIn", "mem0", "syn0", "beta", "thr", "alpha", "rec", "spkOut",
                  "spk", "syn", "mem", "trace", "pre"]
BACKWARD_FIELDS = ["step", "gradSpk", "gradSyn", "gradMem", "trace", "memHist", "synHist", "spkHist", "pre", "mem0",
                   "syn0", "spk0", "weightsT", "beta", "thr", "alpha", "gradIn", "gradOut", "parts", "gradX",
                   "carryMem", "carrySyn", "carrySpk", "gradWeightsT", "gradBias", "gradBeta", "gradThr",
                   "gradAlpha"]


def codelet_forward(driver, spec: LIFSpec, x, mem0, syn0, spk0, weight, bias, beta, thr, alpha,
                    neuron_blocks: int, batch_blocks: int, check_ownership: bool = True):
    """The forward program: spkIn <- spk0 (or zeros); Repeat(T) {compute; exchange spkOut; step++}.
    Returns ``(spk, syn, mem, trace, pre)`` like the reference (syn / pre empty when unused)."""
    T, B, N = x.shape
    tiles = _plan(B, N, neuron_blocks, batch_blocks)
    c0, c1 = surrogate_constants(spec)
    for tile in tiles:
        Bt, n = tile.b1 - tile.b0, tile.j1 - tile.j0
        sl = slice(tile.j0, tile.j1)
        f = tile.fields
        f["step"] = torch.zeros(1, dtype=torch.int32)
        f["x"] = _local(x, tile, True)
        f["weights"] = weight[sl, :].contiguous()
        f["bias"] = bias[sl].contiguous() if bias is not None else torch.empty(0)
        f["spkIn"] = (spk0[tile.b0:tile.b1].clone() if spk0 is not None else torch.zeros(Bt, N))
        f["mem0"], f["syn0"] = _local(mem0, tile, False), _local(syn0, tile, False)
        f["beta"], f["thr"] = beta[sl].contiguous(), thr[sl].contiguous()
        f["alpha"] = alpha[sl].contiguous() if spec.synaptic else torch.empty(0)
        f["rec"], f["spkOut"] = _nan(Bt, n), _nan(Bt, n)
        f["spk"], f["mem"], f["trace"] = _nan(T, Bt, n), _nan(T, Bt, n), _nan(T, Bt, n)
        f["syn"] = _nan(T, Bt, n) if spec.synaptic else torch.empty(0)
        f["pre"] = _nan(T, Bt, n) if spec.immediate_reset else torch.empty(0)

    def scalars(tile):
        return _Scalars(steps=T, batch=tile.b1 - tile.b0, reset=spec.reset, immediate_reset=int(spec.immediate_reset),
                        surrogate=spec.surrogate.code, need_prev_mem=0, num_workers=WORKERS, c0=c0, c1=c1,
                        gsf=spec.graded_spikes_factor)

    writable = [n for n in ("rec", "spkOut", "spk", "syn", "mem", "trace", "pre") if tiles[0].fields[n].numel()]
    for t in range(T):
        for tile in tiles:  # Output scratch holds nothing across steps
            tile.fields["rec"].fill_(float("nan"))
            tile.fields["spkOut"].fill_(float("nan"))

        def fresh(tile, t=t):
            rows = {n: (lambda c, t=t: c[t]) for n in writable if n not in ("rec", "spkOut")}
            return {**rows, "rec": lambda c: c, "spkOut": lambda c: c}

        _compute_phase(driver, True, spec.synaptic, tiles, FORWARD_FIELDS, writable, fresh, scalars, check_ownership)
        _exchange(tiles, "spkOut", "spkIn")
        for tile in tiles:
            tile.fields["step"] += 1
    outs = []
    for name in ("spk", "syn", "mem", "trace", "pre"):
        if not tiles[0].fields[name].numel():
            outs.append(torch.empty(0))
            continue
        full = _nan(T, B, N)
        for tile in tiles:
            full[:, tile.b0:tile.b1, tile.j0:tile.j1] = tile.fields[name]
        outs.append(full)
    return tuple(outs)


def codelet_backward(driver, spec: LIFSpec, grad_spk, grad_syn, grad_mem, trace, mem, syn, spk, pre, mem0, syn0,
                     spk0, weight, beta, thr, alpha, has_bias: bool, neuron_blocks: int, batch_blocks: int,
                     check_ownership: bool = True):
    """The backward program: Repeat(T) {compute; exchange gradOut; step++}; compute (k = T).
    Returns the reference's tuple ``(grad_x, grad_mem0, grad_syn0, grad_spk0, grad_weight, grad_bias,
    grad_beta, grad_thr, grad_alpha)``, the per-tile sums of a split batch added up."""
    T, B, N = trace.shape
    tiles = _plan(B, N, neuron_blocks, batch_blocks)
    for tile in tiles:
        Bt, n = tile.b1 - tile.b0, tile.j1 - tile.j0
        sl = slice(tile.j0, tile.j1)
        f = tile.fields
        f["step"] = torch.zeros(1, dtype=torch.int32)
        for name, t in (("gradSpk", grad_spk), ("gradSyn", grad_syn), ("gradMem", grad_mem), ("trace", trace),
                        ("memHist", mem), ("synHist", syn), ("spkHist", spk), ("pre", pre)):
            f[name] = _local(t, tile, True)
        f["mem0"], f["syn0"], f["spk0"] = _local(mem0, tile, False), _local(syn0, tile, False), _local(spk0, tile, False)
        f["weightsT"] = weight[:, sl].t().contiguous()
        f["beta"], f["thr"] = beta[sl].contiguous(), thr[sl].contiguous()
        f["alpha"] = alpha[sl].contiguous() if spec.synaptic else torch.empty(0)
        f["gradIn"] = _nan(Bt, N)  # never written before the first exchange: must not be read at k = 0
        f["gradOut"], f["parts"], f["gradX"] = _nan(Bt, n), _nan(3, n), _nan(T, Bt, n)
        f["carryMem"], f["carrySpk"] = _nan(Bt, n), _nan(Bt, n)
        f["carrySyn"] = _nan(Bt, n) if spec.synaptic else torch.empty(0)
        f["gradWeightsT"] = _nan(n, N)
        f["gradBias"] = _nan(n) if has_bias else torch.empty(0)
        f["gradBeta"], f["gradThr"] = _nan(n), _nan(n)
        f["gradAlpha"] = _nan(n) if spec.synaptic else torch.empty(0)

    def scalars(tile):
        return _Scalars(steps=T, batch=tile.b1 - tile.b0, reset=spec.reset, immediate_reset=int(spec.immediate_reset),
                        surrogate=0, need_prev_mem=int(needs_prev_mem(spec, True, True)), num_workers=WORKERS,
                        c0=0.0, c1=0.0, gsf=spec.graded_spikes_factor)

    writable = [n for n in ("gradOut", "parts", "gradX", "carryMem", "carrySyn", "carrySpk", "gradWeightsT", "gradBias",
                            "gradBeta", "gradThr", "gradAlpha") if tiles[0].fields[n].numel()]
    for k in range(T + 1):
        for tile in tiles:
            tile.fields["gradOut"].fill_(float("nan"))
            tile.fields["parts"].fill_(float("nan"))

        def fresh(tile, k=k):
            if k == T:
                return {}
            return {"gradX": lambda c: c[T - 1 - k], "gradOut": lambda c: c}

        _compute_phase(driver, False, spec.synaptic, tiles, BACKWARD_FIELDS, writable, fresh, scalars,
                       check_ownership)
        if k < T:
            _exchange(tiles, "gradOut", "gradIn")
            for tile in tiles:
                tile.fields["step"] += 1
    grad_x = _nan(T, B, N)
    grad_mem0, grad_syn0, grad_spk0 = _nan(B, N), _nan(B, N), _nan(B, N)
    grad_w, grad_b = torch.zeros(N, N), torch.zeros(N)
    params = [torch.zeros(N) for _ in range(3)]
    for tile in tiles:
        f, sl = tile.fields, slice(tile.j0, tile.j1)
        grad_x[:, tile.b0:tile.b1, sl] = f["gradX"]
        grad_mem0[tile.b0:tile.b1, sl] = f["carryMem"]
        grad_spk0[tile.b0:tile.b1, sl] = f["carrySpk"]
        if spec.synaptic:
            grad_syn0[tile.b0:tile.b1, sl] = f["carrySyn"]
        # a split batch leaves one partial sum per batch block: the graph reduces them (popops)
        grad_w[:, sl] += f["gradWeightsT"].t()
        if has_bias:
            grad_b[sl] += f["gradBias"]
        params[0][sl] += f["gradBeta"]
        params[1][sl] += f["gradThr"]
        if spec.synaptic:
            params[2][sl] += f["gradAlpha"]
    return grad_x, grad_mem0, grad_syn0, grad_spk0, grad_w, grad_b, *params


def _make_spec(kind: str, reset: str, reset_delay: bool, surrogate=None, gsf: float = 1.0) -> LIFSpec:
    return LIFSpec(kind == "RSynaptic", RECURRENCE_ALL_TO_ALL, RESET_CODES[reset], reset_delay,
                   surrogate or S.Surrogate("atan", 2.0, 0.0), gsf)


def _problem(kind: str, T: int, B: int, N: int, states: bool, bias: bool = True):
    """Fresh random inputs: weights large enough that the recurrence changes who spikes."""
    x = random_input(T, B, N)
    weight = (torch.rand(N, N) * 2 - 1) * (3.0 / N ** 0.5)
    b = (torch.rand(N) * 2 - 1) * 0.5 if bias else None
    beta, thr = torch.rand(N) * 0.9 + 0.05, torch.rand(N) + 0.5
    alpha = torch.rand(N) * 0.9 + 0.05 if kind == "RSynaptic" else torch.empty(0)
    mem0 = torch.randn(B, N) * 0.5 if states else None
    syn0 = torch.randn(B, N) * 0.5 if states and kind == "RSynaptic" else None
    spk0 = (torch.rand(B, N) > 0.6).float() if states else None
    return x, mem0, syn0, spk0, weight, b, beta, thr, alpha


def _check(driver, spec, problem, neuron_blocks, batch_blocks, check_ownership=True):
    x, mem0, syn0, spk0, weight, bias, beta, thr, alpha = problem
    T, B, N = x.shape
    ref = lif_all_to_all_forward_reference(x, mem0, syn0, spk0, weight, bias, beta, thr, alpha, spec)
    got = codelet_forward(driver, spec, x, mem0, syn0, spk0, weight, bias, beta, thr, alpha, neuron_blocks,
                          batch_blocks, check_ownership)
    assert 0 < ref[0].count_nonzero() < ref[0].numel(), "inputs must give some spikes, not all"
    pre_spike = ref[4] if spec.immediate_reset else ref[2]
    clear = (pre_spike - thr).abs() > MARGIN
    assert clear.float().mean() > 0.99, "too few spikes decided clear of the products' rounding"
    assert torch.equal(got[0][clear], ref[0][clear]), "spikes differ where the membrane is clear of threshold"
    for name, a, e in zip(("spk", "syn", "mem", "trace", "pre"), got, ref):
        assert a.shape == e.shape, name
        if e.numel():
            assert not a.isnan().any(), f"{name}: elements never written"
            assert_close_scaled(a, e, 1e-5, name)

    # Backward on the reference's histories (so it is checked on its own), every gradient requested.
    grads_up = [torch.randn(T, B, N) for _ in range(3)]
    g_syn = grads_up[1] if spec.synaptic else None
    spk, syn, mem, trace, pre = ref
    expected = lif_all_to_all_backward_reference(grads_up[0], g_syn, grads_up[2], trace, mem, syn, spk, pre, mem0, syn0,
                                            spk0, weight, beta, thr, alpha, spec,
                                            (True, bias is not None, True, True, spec.synaptic))
    actual = codelet_backward(driver, spec, grads_up[0], g_syn, grads_up[2], trace, mem, syn, spk, pre, mem0, syn0,
                              spk0, weight, beta, thr, alpha, bias is not None, neuron_blocks, batch_blocks,
                              check_ownership)
    names = ["x", "mem0", "syn0", "spk0", "weight", "bias", "beta", "threshold", "alpha"]
    for name, a, e in zip(names, actual, expected):
        if name == "syn0" and not spec.synaptic or name == "alpha" and not spec.synaptic:
            continue
        if name == "bias" and bias is None:
            continue
        assert not a.isnan().any(), f"grad {name}: elements never written"
        assert_close_scaled(a, e.reshape(a.shape), 1e-5, f"grad {name}")


# (T, B, N, neuron blocks, batch blocks, initial states given); N is never a multiple of the
# neuron blocks, tiles hold fewer neurons than workers in some, the batch is split in others.
SHAPES = {
    "T1-B3-N7-tiles3x1-states": (1, 3, 7, 3, 1, True),
    "T6-B5-N23-tiles4x2-zero-init": (6, 5, 23, 4, 2, False),
    "T9-B2-N13-tiles5x1-states": (9, 2, 13, 5, 1, True),
}


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
def test_all_to_all_codelets_match_reference(driver, kind, reset, reset_delay, shape):
    T, B, N, neuron_blocks, batch_blocks, states = SHAPES[shape]
    spec = _make_spec(kind, reset, reset_delay)
    _check(driver, spec, _problem(kind, T, B, N, states), neuron_blocks, batch_blocks)


@pytest.mark.parametrize("surrogate, gsf", [(S.Surrogate("fast_sigmoid", 5.0, 0.0), 2.5),
                                            (S.Surrogate("sigmoid", 4.0, 0.0), 1.0),
                                            (S.Surrogate("straight_through_estimator", 0.0, 0.0), 1.0)],
                         ids=["fast_sigmoid5-graded2.5", "sigmoid4", "ste"])
def test_all_to_all_codelets_surrogates_graded_spikes_no_bias(driver, surrogate, gsf):
    spec = _make_spec("RLeaky", "subtract", True, surrogate, gsf)
    _check(driver, spec, _problem("RLeaky", 7, 3, 11, True, bias=False), 3, 1, check_ownership=False)


def test_partition_does_not_change_the_bits(driver):
    """One tile holding every neuron and batch row (no exchange partner) or eight tiles with a
    split batch: each sum runs over the same terms in the same order, so the bits are the same."""
    spec = _make_spec("RSynaptic", "zero", False)
    problem = _problem("RSynaptic", 5, 4, 9, True)
    one = codelet_forward(driver, spec, *problem, 1, 1, check_ownership=False)
    many = codelet_forward(driver, spec, *problem, 4, 2, check_ownership=False)
    for a, b in zip(one, many):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
def test_backward_on_the_codelets_own_forward(driver, kind):
    """The whole op as the IPU runs it: the backward program reads the forward program's own
    histories (not the reference's), and still gives the reference's gradients."""
    spec = _make_spec(kind, "subtract", False)
    x, mem0, syn0, spk0, weight, bias, beta, thr, alpha = _problem(kind, 8, 3, 10, True)
    fwd = codelet_forward(driver, spec, x, mem0, syn0, spk0, weight, bias, beta, thr, alpha, 3, 1,
                          check_ownership=False)
    ref = lif_all_to_all_forward_reference(x, mem0, syn0, spk0, weight, bias, beta, thr, alpha, spec)
    pre_spike = ref[4] if spec.immediate_reset else ref[2]
    assert ((pre_spike - thr).abs() > MARGIN).all(), "a spike this close to threshold may flip: pick another seed"
    assert torch.equal(fwd[0], ref[0])
    g_spk, g_syn, g_mem = (torch.randn(8, 3, 10) for _ in range(3))
    g_syn = g_syn if spec.synaptic else None
    needs = (True, True, True, True, spec.synaptic)
    expected = lif_all_to_all_backward_reference(g_spk, g_syn, g_mem, *[ref[i] for i in (3, 2, 1, 0, 4)], mem0, syn0, spk0,
                                            weight, beta, thr, alpha, spec, needs)
    spk, syn, mem, trace, pre = fwd
    actual = codelet_backward(driver, spec, g_spk, g_syn, g_mem, trace, mem, syn, spk, pre, mem0, syn0, spk0, weight,
                              beta, thr, alpha, True, 3, 1, check_ownership=False)
    names = ["x", "mem0", "syn0", "spk0", "weight", "bias", "beta", "threshold", "alpha"]
    for name, a, e in zip(names, actual, expected):
        if name in ("syn0", "alpha") and not spec.synaptic:
            continue
        assert_close_scaled(a, e.reshape(a.shape), 1e-5, f"grad {name}")
