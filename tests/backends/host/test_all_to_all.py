"""The all-to-all host backend's two sparse products (fusedsnn/backends/host/all_to_all.py,
csrc/kernels/lif_all_to_all.hpp) against oracles of their stated arithmetic.

Forward: ``rec = bias + sum_j spk[j] * W[:, j]`` summed bias first, then the spiking inputs in
ascending j, one multiply and one add each (the multiply skipped when the spike is exactly 1,
which gives the same bits). A reference run whose ``F.linear`` is replaced by that loop in
PyTorch must give the host's float32 spikes and states bit for bit, for every register block,
padded last vector, thread split and graded factor. Weight gradient: ``dW^T[j] = sum of the rows
of G where input j spiked``, against the dense product (float64 to 1e-12, float32 within the
rounding of a sum of a few hundred terms), for row counts that are not multiples of 64 and
widths that are not multiples of 16.
"""

from __future__ import annotations

import ctypes

import pytest
import torch

from fusedsnn.backends.host import all_to_all as lif_all_to_all_host
from fusedsnn.backends.reference.all_to_all import all_to_all_parameter_gradients
from fusedsnn.ops.all_to_all import lif_all_to_all_forward

from ...conftest import dtype_id, ordered_spike_linear, random_input, weighted_loss

pytestmark = pytest.mark.skipif(not lif_all_to_all_host.available(), reason="the all-to-all host library did not build")


@pytest.fixture
def threads(request):
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)


# (T, B, N): one vector and a tail; two register blocks and a padded last vector; B below the
# thread count (neuron tiles); rows of spikes that span several 64-bit words.
SHAPES = [(4, 3, 7), (3, 5, 300), (3, 1, 263), (2, 9, 131)]


@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=["1thread", "2threads"])
@pytest.mark.parametrize("gsf", [1.0, 2.5], ids=["unit", "graded"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}-B{}-N{}".format(*s))
def test_forward_product_order_is_bit_exact(monkeypatch, shape, with_bias, gsf, threads):
    T, B, N = shape
    x = random_input(T, B, N)
    weight = torch.randn(N, N) * 3 / N**0.5
    bias = torch.randn(N) if with_bias else x.new_empty(0)
    spk0 = (torch.rand(B, N) > 0.6).float() * torch.rand(B, N) * 2  # any values, not only 0/gsf
    beta, thr = torch.full((N,), 0.9), torch.rand(N) + 0.5
    empty = x.new_empty(0)
    args = (x, torch.randn(B, N), empty, spk0, weight, bias, beta, thr, empty, False, 0, True, 0, 2.0, 1.0, gsf)
    host = lif_all_to_all_forward(*args, "host")
    with monkeypatch.context() as m:
        m.setattr(torch.nn.functional, "linear", ordered_spike_linear)
        oracle = lif_all_to_all_forward(*args, "reference")
    assert 0 < host[0].count_nonzero() < host[0].numel()
    for name, a, e in zip(["spk", "syn", "mem", "trace"], host[:4], oracle[:4]):
        assert torch.equal(a, e), name


@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=["1thread", "2threads"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("gsf", [1.0, 2.5], ids=["unit", "graded"])
@pytest.mark.parametrize("with_spk0", [False, True], ids=["no-spk0", "spk0"])
@pytest.mark.parametrize("shape", [(1, 3, 5), (2, 7, 19), (3, 40, 131), (9, 25, 300)],
                         ids=lambda s: "T{}-B{}-N{}".format(*s))
def test_spike_weight_gradient_matches_dense_product(shape, with_spk0, gsf, dtype, threads):
    T, B, N = shape
    grad_rec = torch.randn(T, B, N, dtype=dtype)
    spk = (torch.rand(T, B, N) < 0.3).to(dtype) * gsf
    spk0 = torch.randn(B, N, dtype=dtype) if with_spk0 else None
    actual = lif_all_to_all_host.spike_weight_gradient(grad_rec, spk, spk0, gsf)
    expected, _ = all_to_all_parameter_gradients(grad_rec, spk, spk0, True, False)
    assert actual.shape == (N, N) and actual.is_contiguous()
    if dtype == torch.float64:
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    else:
        # a float32 sum of up to T * B terms of O(1) in two different orders
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * (T * B) ** 0.5)


@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=["1thread", "2threads"])
@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
def test_sparse_and_blas_weight_gradients_agree_through_the_op(monkeypatch, kind, threads):
    """The op's gradients with dW from spike masks (default) and from one BLAS product
    (FUSEDSNN_DENSE_SPARSE_DW=0): every other gradient bit-identical, dW within float32 rounding."""
    from fusedsnn import functional as F

    T, B, N = 6, 11, 150
    x = random_input(T, B, N).requires_grad_()
    linear = torch.nn.Linear(N, N)
    with torch.no_grad():
        linear.weight.mul_(3)
    runs = []
    for sparse in ("1", "0"):
        monkeypatch.setenv("FUSEDSNN_DENSE_SPARSE_DW", sparse)
        if kind == "RLeaky":
            outs = F.rleaky(x, 0.9, threshold=1.0, recurrent=linear, backend="host")
        else:
            outs = F.rsynaptic(x, 0.8, 0.9, threshold=1.0, recurrent=linear, backend="host")
        runs.append(torch.autograd.grad(weighted_loss(outs), [x, linear.weight, linear.bias]))
    (gx, gw, gb), (gx_blas, gw_blas, gb_blas) = runs
    assert torch.equal(gx, gx_blas)
    torch.testing.assert_close(gb, gb_blas, rtol=1e-5, atol=1e-4)
    assert gw.abs().max() > 0
    torch.testing.assert_close(gw, gw_blas, rtol=1e-5, atol=1e-4 * gw_blas.abs().max().item())


# ---------------------------------------------------------------------------------------------
# The same products for a Linear layer fed by spikes (fusedsnn.memory's spike_product)
# ---------------------------------------------------------------------------------------------

def _linear_spikes(rows, n_in, value, dtype, rate=0.3):
    x = torch.zeros(rows, n_in, dtype=dtype)
    x[torch.rand(rows, n_in) < rate] = value
    return x


# (rows, in, out): scalar columns only; a vector and a scalar tail with rows past a 32-row tile
# and inputs past a 64-bit word; several register blocks, threaded; an out width whose W^T row
# is padded off a 512-byte multiple.
LINEAR_SHAPES = [(5, 7, 3), (70, 130, 37), (97, 131, 300), (40, 64, 128)]


@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=["1thread", "2threads"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("value", [1.0, 2.5, -0.5], ids=["unit", "graded", "negative"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=lambda s: "rows{}-in{}-out{}".format(*s))
def test_spike_linear_forward_order_is_bit_exact(shape, with_bias, value, dtype, threads):
    rows, n_in, n_out = shape
    x = _linear_spikes(rows, n_in, value, dtype)
    weight = torch.randn(n_out, n_in, dtype=dtype)
    bias = torch.randn(n_out, dtype=dtype) if with_bias else None
    operands = lif_all_to_all_host.spike_linear_operands(weight, bias)
    out, c = lif_all_to_all_host.spike_linear_forward(x, *operands, n_out, max_rate=1.0)
    assert c == value and out.shape == (rows, n_out)
    assert torch.equal(out, ordered_spike_linear(x, weight, bias))


def test_spike_linear_forward_all_zero_input_gives_the_bias():
    weight, bias = torch.randn(20, 9), torch.randn(20)
    operands = lif_all_to_all_host.spike_linear_operands(weight, bias)
    out, c = lif_all_to_all_host.spike_linear_forward(torch.zeros(6, 9), *operands, 20)
    assert c == 0.0 and torch.equal(out, bias.expand(6, -1))


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.add_(torch.rand_like(x)),                      # continuous values
        lambda x: x.index_put_((torch.tensor([3]), torch.tensor([4])), torch.tensor(0.5)),  # a third value
        lambda x: x.index_put_((torch.tensor([0]), torch.tensor([0])), torch.tensor(-0.0)),  # -0.0 beside 1
        lambda x: x.index_put_((torch.tensor([5]), torch.tensor([2])), torch.tensor(float("nan"))),
        lambda x: x.mul_(float("inf")),                            # spikes of infinity
        lambda x: x.fill_(1.0),                                    # spikes, but denser than max_rate
    ],
    ids=["floats", "third-value", "negative-zero", "nan", "infinite", "too-dense"],
)
def test_spike_linear_forward_declines_what_it_cannot_do(make):
    x = make(_linear_spikes(8, 70, 1.0, torch.float32))
    weight = torch.randn(40, 70)
    operands = lif_all_to_all_host.spike_linear_operands(weight, None)
    assert lif_all_to_all_host.spike_linear_forward(x, *operands, 40, max_rate=0.5) is None


@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=["1thread", "2threads"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
def test_spike_linear_checked_counts_the_spikes_it_checks(dtype, threads):
    # rows past a 32-row tile and an odd width, so both workers count a share
    x = _linear_spikes(1003, 131, 1.0, dtype, rate=0.17)
    weight, bias = torch.randn(70, 131, dtype=dtype), torch.randn(70, dtype=dtype)
    wt, bp = lif_all_to_all_host.spike_linear_operands(weight, bias)
    nonzero = int(x.count_nonzero())
    done = lif_all_to_all_host.spike_linear_checked(x, wt, bp, 70, max_rate=1.0, unit_only=True)
    assert done.value == 1.0 and done.nonzero == nonzero and torch.equal(done.out, ordered_spike_linear(x, weight, bias))
    # declined for its rate, but counted all the same
    dense = lif_all_to_all_host.spike_linear_checked(x, wt, bp, 70, max_rate=0.1)
    assert dense.out is None and dense.value == 1.0 and dense.nonzero == nonzero
    # graded spikes: multiplied unless unit_only; counted either way
    graded = lif_all_to_all_host.spike_linear_checked(x * 0.5, wt, bp, 70, max_rate=1.0, unit_only=True)
    assert graded.out is None and graded.value == 0.5 and graded.nonzero == nonzero
    assert lif_all_to_all_host.spike_linear_checked(x * 0.5, wt, bp, 70, max_rate=1.0).out is not None
    # count only: no weights needed, no product
    assert lif_all_to_all_host.count_spikes(x) == (1.0, nonzero)
    assert lif_all_to_all_host.count_spikes(torch.zeros(4, 9, dtype=dtype)) == (0.0, 0)
    not_spikes = x.clone()
    not_spikes[500, 7] = 0.25
    assert lif_all_to_all_host.count_spikes(not_spikes) == (None, -1)
    assert lif_all_to_all_host.spike_linear_checked(not_spikes, wt, bp, 70, max_rate=1.0) == (None, None, -1)


def _ordered_weight_gradient(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dW^T[j] = sum of the rows of g where x[:, j] != 0``, rows added in ascending order."""
    acc = torch.zeros(x.shape[1], g.shape[1], dtype=g.dtype)
    for r in range(x.shape[0]):
        acc = torch.where((x[r] != 0)[:, None], acc + g[r][None, :], acc)
    return acc.t()


@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=["1thread", "2threads"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("shape", LINEAR_SHAPES + [(150, 33, 80)], ids=lambda s: "rows{}-in{}-out{}".format(*s))
def test_spike_linear_weight_gradient_order_is_bit_exact(shape, dtype, threads):
    rows, n_in, n_out = shape
    x = _linear_spikes(rows, n_in, 1.0, dtype)
    g = torch.randn(rows, n_out, dtype=dtype)
    got = lif_all_to_all_host.spike_linear_weight_gradient(g, x, 1.0)
    assert got.shape == (n_out, n_in) and got.is_contiguous()
    assert torch.equal(got, _ordered_weight_gradient(g, x))
    # graded spikes: the 0/1 sum scaled once
    graded = lif_all_to_all_host.spike_linear_weight_gradient(g, x * 2.5, 2.5)
    assert torch.equal(graded, _ordered_weight_gradient(g, x) * 2.5)


def test_spike_linear_entries_reject_bad_arguments():
    lib = lif_all_to_all_host.load_library()
    x, wt, out, value = torch.zeros(4, 8), torch.zeros(8, 16), torch.empty(4, 16), torch.zeros(())
    nonzero = ctypes.c_int64(5)
    ok = (x.data_ptr(), 4, 8, wt.data_ptr(), 16, None, 0, out.data_ptr(), 16, 1.0, 0, 0, 1, value.data_ptr(),
          ctypes.byref(nonzero))
    assert lib.fusedsnn_spike_linear(*ok) == 0 and nonzero.value == 0
    assert lib.fusedsnn_spike_linear(*ok[:4], 15, *ok[5:]) == 1  # ldw < n_out
    assert lib.fusedsnn_spike_linear(*ok[:11], 2, *ok[12:]) == 1  # dtype
    assert lib.fusedsnn_spike_linear(None, *ok[1:]) == 1
    assert lib.fusedsnn_spike_linear(*ok[:14], None) == 1  # nowhere to count
    assert lib.fusedsnn_spike_linear(*ok[:7], None, *ok[8:]) == 1  # no output for a product
    # a negative max_rate only counts: no weights or output needed
    count_only = (x.data_ptr(), 4, 8, None, 16, None, 0, None, 16, -1.0, 0, 0, 1, value.data_ptr(), ctypes.byref(nonzero))
    assert lib.fusedsnn_spike_linear(*count_only) == 2 and nonzero.value == 0
    g, dwt = torch.randn(4, 16), torch.empty(8, 16)
    assert lib.fusedsnn_spike_linear_weight_gradient(g.data_ptr(), x.data_ptr(), 4, 8, 16, dwt.data_ptr(), 16, 0, 1) == 0
    assert lib.fusedsnn_spike_linear_weight_gradient(g.data_ptr(), x.data_ptr(), 4, 8, 16, dwt.data_ptr(), 15, 0, 1) == 1
    assert lib.fusedsnn_spike_linear_weight_gradient(g.data_ptr(), None, 4, 8, 16, dwt.data_ptr(), 16, 0, 1) == 1
    assert lib.fusedsnn_spike_linear_weight_gradient(g.data_ptr(), x.data_ptr(), 4, 8, 16, dwt.data_ptr(), 16, 2, 1) == 1
