"""The losses of the paper's eqs. 2-6 (modeling.ml.losses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modeling.ml.losses import EPS, LOSSES, emd_loss, get_loss, jsd_loss


def _naive(name: str, q: list[float], p: list[float]) -> float:
    """The formulas written out with Python loops."""
    n = len(p)
    if name == "ce":
        return -sum(p[i] * math.log(max(q[i], EPS)) for i in range(n))
    if name == "mse":
        return sum((p[i] - q[i]) ** 2 for i in range(n)) / n
    if name == "jsd":
        m = [(p[i] + q[i]) / 2 for i in range(n)]

        def kl(a: list[float], b: list[float]) -> float:
            return sum(a[i] * math.log(a[i] / b[i]) for i in range(n) if a[i] > 0)

        return 0.5 * kl(p, m) + 0.5 * kl(q, m)
    total, cdf_p, cdf_q = 0.0, 0.0, 0.0
    for i in range(n):
        cdf_p += p[i]
        cdf_q += q[i]
        total += (cdf_p - cdf_q) ** 2
    return total


def _distributions(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.ones(5), size=n)
    p = rng.dirichlet(np.ones(5), size=n)
    p[::2, 0] = 0.0  # true distributions often have empty grades
    p /= p.sum(axis=1, keepdims=True)
    return torch.from_numpy(q), torch.from_numpy(p)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_matches_its_formula_written_as_loops(name: str) -> None:
    q, p = _distributions(7, seed=1)
    expected = [_naive(name, q[i].tolist(), p[i].tolist()) for i in range(len(q))]

    per_clip = get_loss(name)(q, p, reduction="none")

    assert per_clip.shape == (7,)
    np.testing.assert_allclose(per_clip.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert get_loss(name)(q, p).item() == pytest.approx(np.mean(expected), rel=1e-10)
    assert get_loss(name)(q, p, reduction="sum").item() == pytest.approx(sum(expected), rel=1e-10)


@pytest.mark.parametrize("name", ["mse", "jsd", "emd"])
def test_identical_distributions_have_zero_loss(name: str) -> None:
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]])
    assert get_loss(name)(p.clone(), p, reduction="none").abs().max().item() < 1e-7


def test_emd_of_all_votes_on_a_against_all_on_e_is_four() -> None:
    a = torch.tensor([[1.0, 0, 0, 0, 0]])
    e = torch.tensor([[0, 0, 0, 0, 1.0]])
    assert emd_loss(a, e).item() == pytest.approx(4.0)
    # Ordered grades: predicting B for a true A costs less than predicting E.
    b = torch.tensor([[0, 1.0, 0, 0, 0]])
    assert emd_loss(b, a).item() == pytest.approx(1.0)


def test_jsd_of_disjoint_distributions_is_log_two() -> None:
    a = torch.tensor([[1.0, 0, 0, 0, 0]])
    e = torch.tensor([[0, 0, 0, 0, 1.0]])
    assert jsd_loss(a, e).item() == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_reach_the_logits_finite_and_non_zero(name: str) -> None:
    logits = torch.tensor(
        [[8.0, -8.0, 0.0, 1.0, -30.0], [0.0, 0.0, 0.0, 0.0, 0.0]], requires_grad=True
    )
    p = torch.tensor([[0.0, 0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]])

    get_loss(name)(logits.softmax(dim=1), p).backward()

    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad.abs().sum(dim=1) > 0).all()


def test_a_predicted_zero_gives_a_large_but_finite_cross_entropy() -> None:
    q = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]])
    p = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]])
    loss = get_loss("ce")(q, p)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(-math.log(EPS))


def test_unknown_names_and_bad_arguments_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="ce, mse, jsd, emd"):
        get_loss("kl")
    assert get_loss("EMD") is emd_loss
    q, p = _distributions(2, seed=0)
    with pytest.raises(ValueError, match="reduction"):
        emd_loss(q, p, reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        emd_loss(q[:, :4], p)
