"""Losses between grade distributions: the paper's eqs. 2-6.

Every loss takes the predicted grade distribution ``q`` (after softmax) and the true one ``p``,
both (N, 5) with columns A..E and rows summing to 1, and returns the per-sample values
reduced by ``reduction``:

- ``"mean"`` (default): the mean over the N samples, a scalar;
- ``"sum"``: the sum over the N samples, a scalar;
- ``"none"``: the (N,) per-sample values.

Definitions (n = 5 grades):

- **CE** (eq. 2): ``-sum_i p_i log q_i``.
- **MSE** (eq. 3): ``(1/n) sum_i (p_i - q_i)^2``.
- **JSD** (eqs. 4, 5): ``0.5 KL(p || m) + 0.5 KL(q || m)`` with ``m = (p + q) / 2`` and
  ``KL(a || b) = sum_i a_i log(a_i / b_i)`` (natural log; a term with ``a_i = 0`` is 0).
- **EMD** (eq. 6): ``sum_i (CDF_i(p) - CDF_i(q))^2`` over the ordered grades A < B < C < D < E.
  All mass on A against all mass on E gives 4 (four CDF steps of 1).

Logarithms are taken of probabilities clamped to at least ``EPS``, so a predicted 0 gives a
large but finite loss and finite gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

Reduction = Literal["mean", "sum", "none"]
LossFn = Callable[..., torch.Tensor]

EPS = 1e-7


def _reduce(per_sample: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def _check(q: torch.Tensor, p: torch.Tensor) -> None:
    if q.shape != p.shape or q.ndim != 2:
        raise ValueError(f"q and p must both have shape (N, n_grades), got {q.shape} and {p.shape}")


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x.clamp_min(EPS))


def _kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) per row, (N,); terms with a_i = 0 contribute 0."""
    return torch.where(a > 0, a * (_log(a) - _log(b)), torch.zeros_like(a)).sum(dim=1)


def cross_entropy_loss(
    q: torch.Tensor, p: torch.Tensor, *, reduction: Reduction = "mean"
) -> torch.Tensor:
    """CE (eq. 2) of the predicted distribution ``q`` against the true ``p``, both (N, 5)."""
    _check(q, p)
    return _reduce(-(p * _log(q)).sum(dim=1), reduction)


def mse_loss(q: torch.Tensor, p: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """MSE (eq. 3): the mean over the grades of the squared probability differences."""
    _check(q, p)
    return _reduce(((p - q) ** 2).mean(dim=1), reduction)


def jsd_loss(q: torch.Tensor, p: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """Jensen-Shannon divergence (eqs. 4, 5) in nats, in [0, log 2]."""
    _check(q, p)
    m = (p + q) / 2
    return _reduce(0.5 * _kl(p, m) + 0.5 * _kl(q, m), reduction)


def emd_loss(q: torch.Tensor, p: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """EMD (eq. 6): the sum over grades of squared differences of the cumulative distributions."""
    _check(q, p)
    return _reduce(((p.cumsum(dim=1) - q.cumsum(dim=1)) ** 2).sum(dim=1), reduction)


LOSSES: dict[str, LossFn] = {
    "ce": cross_entropy_loss,
    "mse": mse_loss,
    "jsd": jsd_loss,
    "emd": emd_loss,
}


LOSS_NAMES: tuple[str, ...] = tuple(LOSSES)  # in the order of the paper's equations


def get_loss(name: str) -> LossFn:
    """The loss called ``name`` (``ce``, ``mse``, ``jsd`` or ``emd``, case-insensitive)."""
    try:
        return LOSSES[name.lower()]
    except KeyError:
        raise ValueError(f"Unknown loss {name!r}; choose one of {', '.join(LOSSES)}.") from None
