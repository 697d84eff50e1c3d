"""Population decoding and losses against snnTorch 1.0.0 where snnTorch is right."""

from __future__ import annotations

import pytest
import torch

from fusedsnn import population as P

SF = pytest.importorskip("snntorch.functional")


def _spikes(T=7, B=5, outputs=30):
    return (torch.rand(T, B, outputs) > 0.6).float().requires_grad_()


def test_ce_rate_loss_matches_snntorch_without_population():
    spk = _spikes(outputs=10)
    y = torch.randint(0, 10, (5,))
    ours = P.ce_rate_loss(spk, y, num_classes=10)
    theirs = SF.ce_rate_loss()(spk, y)
    torch.testing.assert_close(ours.reshape(()), theirs.reshape(()))
    g1, = torch.autograd.grad(ours, spk)
    g2, = torch.autograd.grad(theirs.sum(), spk)
    torch.testing.assert_close(g1, g2)


def test_ce_rate_loss_with_population_uses_group_sums():
    """snnTorch 1.0.0 crashes here (indexes weight=None) and its per-class loop does nothing;
    the right behaviour is the cross entropy of each step's per-class group sums."""
    spk = _spikes(outputs=30)
    y = torch.randint(0, 10, (5,))
    with pytest.raises(TypeError):
        SF.ce_rate_loss(population_code=True, num_classes=10)(spk, y)
    ours = P.ce_rate_loss(spk, y, num_classes=10, pop_size=3)
    groups = spk.reshape(7, 5, 10, 3).sum(-1)
    expected = sum(torch.nn.functional.cross_entropy(groups[t], y) for t in range(7)) / 7
    torch.testing.assert_close(ours, expected)
    # a population of one equals the plain loss
    plain = _spikes(outputs=10)
    torch.testing.assert_close(P.ce_rate_loss(plain, y, 10, 1), SF.ce_rate_loss()(plain, y).reshape(()))


@pytest.mark.parametrize("pop_size", [1, 4], ids=["plain", "population"])
@pytest.mark.parametrize("rates", [(1.0, 0.0), (0.8, 0.2), (0.75, 0.3)])
def test_mse_count_loss_matches_snntorch(pop_size, rates):
    spk = _spikes(T=9, outputs=10 * pop_size)
    y = torch.randint(0, 10, (5,))
    ours = P.mse_count_loss(spk, y, 10, pop_size, *rates)
    theirs = SF.mse_count_loss(correct_rate=rates[0], incorrect_rate=rates[1], population_code=pop_size > 1,
                               num_classes=10)(spk, y)
    torch.testing.assert_close(ours, theirs)


def test_predict_and_accuracy_with_population():
    spk = torch.zeros(3, 2, 6)  # 3 classes x 2 neurons
    spk[:, 0, 4:6] = 1  # sample 0 -> class 2
    spk[0, 1, 0] = 1
    spk[:, 1, 2] = 1  # sample 1 -> class 1 (3 spikes vs 1)
    assert P.predict(spk, 3, 2).tolist() == [2, 1]
    assert P.accuracy(spk, torch.tensor([2, 0]), 3, 2) == 0.5
    assert torch.equal(P.class_counts(spk, 3, 2), torch.tensor([[0.0, 0.0, 6.0], [1.0, 3.0, 0.0]]))


def test_population_shapes_are_checked():
    with pytest.raises(ValueError, match="num_classes \\* pop_size"):
        P.class_counts(torch.zeros(2, 3, 10), 3, 3)
    with pytest.raises(ValueError, match="pop_size"):
        P.class_counts(torch.zeros(2, 3, 10), 10, 0)
    with pytest.raises(ValueError, match="shape"):
        P.class_counts(torch.zeros(3, 10), 10, 1)
