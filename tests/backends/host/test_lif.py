"""Host backend (the IPU codelets' C++ loops on CPU threads) against the reference backend."""

from __future__ import annotations

import pytest
import torch

import fusedsnn.functional as F
from fusedsnn import surrogate as S
from fusedsnn.backends.host import lif as lif_host

from ...conftest import NEURONS, RESETS, dtype_id, random_input
from ..parity import call_neuron, compare_backends, make_params

if not lif_host.available():  # pragma: no cover - the install builds it; say so loudly if not
    pytest.fail("the host library did not build: the install must build it with a C++ compiler",
                pytrace=False)

SURROGATES = {
    "atan": S.atan(), "fast_sigmoid": S.fast_sigmoid(slope=5), "sigmoid": S.sigmoid(slope=25),
    "ste": S.straight_through_estimator(), "triangular": S.triangular(threshold=0.7),
    "sre": S.spike_rate_escape(beta=0.5, slope=3), "disabled": S.disabled(),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", NEURONS)
def test_host_matches_reference(kind, reset, reset_delay, dtype):
    B, features = 3, (7, 5)
    x = random_input(6, B, *features, dtype=dtype)
    params, states = make_params(kind, features, learn=True, with_states=True, B=B, dtype=dtype)
    params = {k: v.detach().to(dtype).requires_grad_() for k, v in params.items()}
    compare_backends("host", kind, x, params, states, dtype, exact=True,
                     reset_mechanism=reset, reset_delay=reset_delay)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", NEURONS)
def test_host_vector_clones_match_reference(kind, reset, reset_delay):
    """Rows long enough for the AVX2/AVX-512 loops (and an odd tail): still bit-identical."""
    B, features = 3, (257,)
    x = random_input(6, B, *features)
    params, states = make_params(kind, features, learn=True, with_states=True, B=B)
    compare_backends("host", kind, x, params, states, torch.float32, exact=True,
                     reset_mechanism=reset, reset_delay=reset_delay)


@pytest.mark.parametrize("surrogate", list(SURROGATES))
@pytest.mark.parametrize("kind", ["Leaky", "RSynaptic"])
def test_host_surrogates(kind, surrogate):
    B, features = 2, (11,)
    x = random_input(5, B, *features, scale=0.8)
    params, states = make_params(kind, features, learn=True, with_states=False, B=B)
    compare_backends("host", kind, x, params, states, torch.float32, exact=True, spike_grad=SURROGATES[surrogate])


@pytest.mark.parametrize("tiles, workers", [(1, 1), (3, 6), (1472, 6), (7, 2)],
                         ids=["1x1", "3x6", "ipu-1472x6", "7x2"])
def test_partition_does_not_change_results(tiles, workers):
    """Any tiles x workers split gives the same numbers: every neuron is owned by one worker."""
    B, N = 5, 301  # odd sizes, more pieces than neurons for 1472 x 6
    x = random_input(9, B, N)
    params, states = make_params("Synaptic", (N,), learn=True, with_states=True, B=B)
    expected = call_neuron("Synaptic", x, params, states, "reference")
    with lif_host.partition(tiles=tiles, workers_per_tile=workers):
        actual = call_neuron("Synaptic", x, params, states, "host")
    for a, e in zip(actual, expected):
        assert torch.equal(a, e)


def test_partition_threads_follow_torch(monkeypatch):
    seen = {}
    original = lif_host._partition_fields

    def spy(desc):
        original(desc)
        seen["threads"] = desc.threads

    monkeypatch.setattr(lif_host, "_partition_fields", spy)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        F.leaky(random_input(3, 2, 4), 0.9, backend="host")
        assert seen["threads"] == 1
    finally:
        torch.set_num_threads(previous)


def test_host_stride0_and_non_contiguous():
    B, N, T = 4, 13, 8
    static = random_input(1, B, N)[0]
    x = static.unsqueeze(0).expand(T, B, N)
    params, states = make_params("Leaky", (N,), learn=True, with_states=True, B=B)
    expected = call_neuron("Leaky", x, params, states, "reference")
    actual = call_neuron("Leaky", x, params, states, "host")
    assert torch.equal(actual[0], expected[0]) and torch.equal(actual[1], expected[1])
    y = random_input(T, B, N, 3).transpose(2, 3)
    p2, s2 = make_params("RLeaky", tuple(y.shape[2:]), learn=True, with_states=True, B=B)
    compare_backends("host", "RLeaky", y, p2, s2, torch.float32, exact=True)


def test_host_is_the_cpu_default():
    from fusedsnn.backends import resolve_backend

    assert resolve_backend("auto", torch.randn(2, 2)).name == "host"
    assert resolve_backend("auto", torch.randn(2, 2, dtype=torch.float64)).name == "host"
    # reduced precision on CPU: the host library is float32/float64 only
    assert resolve_backend("auto", torch.randn(2, 2, dtype=torch.bfloat16)).name == "reference"


def test_bad_partition_arguments():
    with pytest.raises(ValueError, match="tiles"):
        with lif_host.partition(tiles=0):
            pass
    with pytest.raises(ValueError, match="workers_per_tile"):
        with lif_host.partition(workers_per_tile=0):
            pass


@pytest.mark.parametrize("tiles, workers", [(2**31 - 1, 1), (1, 2**31 - 1), (2**31 - 1, 2**31 - 1)],
                         ids=["int32-max-tiles", "int32-max-workers", "both"])
def test_partition_beyond_the_neuron_count_is_the_same_split(tiles, workers):
    """Pieces beyond the neuron count own nothing; they are not looped over (that took a minute
    for 2**31 - 1 tiles) and the results are those of any other split."""
    B, N = 3, 7
    x = random_input(5, B, N)
    params, states = make_params("Leaky", (N,), learn=False, with_states=True, B=B)
    expected = call_neuron("Leaky", x, params, states, "reference")
    desc = lif_host._Desc()
    desc.neurons = B * N
    with lif_host.partition(tiles=tiles, workers_per_tile=workers):
        lif_host._partition_fields(desc)
        assert desc.tiles * desc.workers_per_tile <= 2 * B * N
        actual = call_neuron("Leaky", x, params, states, "host")
    for a, e in zip(actual, expected):
        assert torch.equal(a, e)


@pytest.mark.parametrize("argument", ["tiles", "workers_per_tile"])
@pytest.mark.parametrize("value", [2**31, 2**32 + 3, 0, -1, 2.0, True], ids=str)
def test_partition_counts_outside_int32_are_refused(argument, value):
    """The C side takes int32: 2**32 + 3 must not wrap silently to 3."""
    with pytest.raises(ValueError, match=f"{argument} must be .*int in \\[1, 2\\*\\*31 - 1\\]"):
        with lif_host.partition(**{argument: value}):
            pass


# ---------------------------------------------------------------------------------------------
# Threads and allocation around the kernels
# ---------------------------------------------------------------------------------------------

def test_persistent_pool_concurrent_callers_get_their_own_results():
    """Python threads calling at once (ctypes releases the GIL) share the worker threads
    (torch's OpenMP workers, or the library's own pool where OpenMP is absent, which a busy
    caller bypasses). Every result equals the one computed alone."""
    import threading

    torch.set_num_threads(max(2, torch.get_num_threads()))
    inputs = [random_input(7, 9, 4001) for _ in range(6)]  # above the inline threshold
    expected = [F.leaky(x, 0.9, backend="host") for x in inputs]
    results = [None] * len(inputs)

    def work(i):
        for _ in range(3):
            results[i] = F.leaky(inputs[i], 0.9, backend="host")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_host_backend_works_in_a_forked_child_after_the_pool_started():
    """After fork() the child has none of the parent's worker threads (libgomp's or the
    library's pool): the library runs the child's loops without waiting forever on them (a
    DataLoader worker or a multiprocessing fork)."""
    import os
    import signal

    torch.set_num_threads(max(2, torch.get_num_threads()))
    x = random_input(5, 16, 3001)  # above the inline threshold: the pool runs
    expected = F.leaky(x, 0.9, backend="host")[1]  # starts the pool in the parent
    import hashlib

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        # Only the host op and NumPy here: torch's own OpenMP pool is not usable after fork().
        signal.alarm(60)  # a deadlock kills the child instead of hanging the suite
        mem = F.leaky(x, 0.9, backend="host")[1]
        os.write(write_end, hashlib.sha256(mem.numpy().tobytes()).digest())
        os._exit(0)
    os.close(write_end)
    digest = os.read(read_end, 64)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the child died (status {status})"
    assert digest == hashlib.sha256(expected.numpy().tobytes()).digest(), "the child computed other membranes"


def test_allocator_tuning_respects_opt_out_and_glibc_variables():
    import subprocess
    import sys

    code = "from fusedsnn.backends.host import library; print(library.tune_allocator())"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MALLOC_")}

    def run(**extra):
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()

    import platform

    assert run(FUSEDSNN_MALLOC_TUNING="0") == "False"
    assert run(MALLOC_TRIM_THRESHOLD_="1000") == "False"
    if platform.libc_ver()[0] == "glibc":
        assert run() == "True"


@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("kind", NEURONS)
def test_host_parameter_runs_across_chunks(kind, T):
    """Per-feature parameters are copied into each chunk of neurons in contiguous runs of the
    feature vector: a chunk (2048 neurons) that starts mid-vector (F=7: 2048 % 7 = 4) and
    vectors that wrap many times per chunk give the reference's numbers, bit for bit."""
    B, features = 301, (7,)  # 2107 neurons per step: a second chunk starting at feature 4
    x = random_input(T, B, *features)
    params, states = make_params(kind, features, learn=True, with_states=True, B=B)
    compare_backends("host", kind, x, params, states, torch.float32, exact=True)


@pytest.mark.parametrize("kind", NEURONS)
def test_host_returns_none_for_what_nobody_needs(kind):
    """The eager launchers allocate no empty placeholder outputs and no gradients for absent
    initial states or unrequested parameters (None instead); with states given, the state
    gradients are there and match the reference."""
    from fusedsnn.backends import get_backend
    from fusedsnn.spec import RECURRENCE_ONE_TO_ONE

    spec = F.make_spec(synaptic=kind in ("Synaptic", "RSynaptic"),
                       recurrence=RECURRENCE_ONE_TO_ONE if kind.startswith("R") else 0,
                       reset_mechanism="subtract", reset_delay=True, spike_grad=None,
                       surrogate_disable=False, graded_spikes_factor=1.0, neuron=kind)
    T, B, N = 5, 3, 9
    x = random_input(T, B, N)
    beta, thr, alpha, V = torch.rand(N) * 0.5 + 0.4, torch.rand(N) + 0.5, torch.rand(N) * 0.5, torch.rand(N)
    alpha = alpha if spec.synaptic else None
    V = V if spec.recurrence == RECURRENCE_ONE_TO_ONE else None
    spk, syn, mem, trace, state, pre = lif_host.lif_forward_host(
        x, None, None, None, None, beta, thr, alpha, V, spec, False)
    assert trace is None and state is None and pre is None
    assert (syn is None) == (not spec.synaptic)
    grads = [random_input(T, B, N) for _ in range(3)]
    out = lif_host.lif_backward_host(grads[0], grads[1] if spec.synaptic else None, grads[2], None, mem, syn, spk,
                                     None, None, None, None, beta, thr, alpha, V, spec, x.dtype, (False,) * 4)
    assert out[0].shape == x.shape and all(g is None for g in out[1:])
    # With initial states given, their gradients are computed and equal the reference's.
    mem0, syn0, spk0 = (random_input(B, N) for _ in range(3))
    syn0 = syn0 if spec.synaptic else None
    spk0 = spk0 if spec.recurrence == RECURRENCE_ONE_TO_ONE else None
    ref = get_backend("reference")
    host_fwd = lif_host.lif_forward_host(x, mem0, syn0, spk0, None, beta, thr, alpha, V, spec, False)
    ref_fwd = ref.lif_forward(x, mem0, syn0, spk0, None, beta, thr, alpha, V, spec, False)
    for h, r in zip(host_fwd[:3], ref_fwd[:3]):
        assert (h is None and r.numel() == 0) or torch.equal(h, r)
    empty = torch.empty(0)  # no trace, no pre-reset membrane (reset_delay): as the forward gave
    args = (empty, ref_fwd[2], ref_fwd[1], ref_fwd[0], empty, mem0, syn0, spk0, beta, thr, alpha, V, spec,
            x.dtype, (False,) * 4)
    gsyn = grads[1] if spec.synaptic else None
    host_grads = lif_host.lif_backward_host(grads[0], gsyn, grads[2], *args)
    ref_grads = ref.lif_backward(grads[0], gsyn, grads[2], *args)
    for i, source in ((0, x), (1, mem0), (2, syn0), (3, spk0)):
        if source is None:
            assert host_grads[i] is None
        else:
            torch.testing.assert_close(host_grads[i], ref_grads[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind, loss_on", [(k, o) for k in NEURONS for o in ("spk", "mem", "syn")
                                            if o != "syn" or k in ("Synaptic", "RSynaptic")])
def test_host_backward_with_absent_upstream_gradients(kind, loss_on):
    """A loss on one output leaves the others' gradients absent (None: the kernel reads a row
    of zeros for them); the input gradient still equals the reference's. Rows span two chunks."""
    synaptic = kind in ("Synaptic", "RSynaptic")
    B, features = 3, (701,)  # 2103 neurons per step: two chunks, the second one short
    x = random_input(5, B, *features)
    params, _ = make_params(kind, features, learn=False, with_states=False, B=B)
    grads = {}
    for backend in ("reference", "host"):
        xb = x.detach().clone().requires_grad_()
        outs = dict(zip(("spk", "syn", "mem") if synaptic else ("spk", "mem"),
                        call_neuron(kind, xb, params, {}, backend)))
        weight = random_input(*x.shape, scale=1.0) if not grads else grads["weight"]
        grads["weight"] = weight
        (grads[backend],) = torch.autograd.grad((outs[loss_on] * weight).sum(), xb)
    torch.testing.assert_close(grads["host"], grads["reference"], rtol=1e-5, atol=1e-6)


def test_torch_compile_as_the_process_first_call():
    """torch.compile of a fused neuron before any eager call: the trace must not read the host
    library's ctypes handle (Dynamo cannot guard on a CDLL; the compile failed with
    'Unexpected type <class ctypes.CDLL>' whenever it was the first fused call of a process)."""
    import subprocess
    import sys

    code = (
        "import torch, fusedsnn.functional as Fn\n"
        "torch.manual_seed(3)\n"
        "x = (torch.randn(5, 3, 11) * 1.5).requires_grad_()\n"
        "f = torch.compile(lambda x: Fn.leaky(x, 0.9, 1.0, backend='host'))\n"
        "spk, mem = f(x)\n"
        "(spk.sum() + mem.sum()).backward()\n"
        "ref_spk, ref_mem = Fn.leaky(x.detach(), 0.9, 1.0, backend='reference')\n"
        "assert torch.equal(spk, ref_spk) and torch.allclose(mem, ref_mem)\n"
        "assert x.grad is not None and torch.isfinite(x.grad).all()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
