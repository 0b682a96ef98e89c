"""Learnable feature masks with a trainable threshold (S2LIF, eqs. 6-12; used by `s2lif` and the
"MSA + Mask" variants `mult@mask-*` and `almt@mask-*`).

Paper: X. Zhao, L. Qu, T. Feng, J. Cai, B. Tang, "Learning in Order! A Sequential Strategy to Learn
Invariant Features for Multimodal Sentiment Analysis" (S2LIF), ACM MM 2024, Sec. 3 "Multimodal Learnable
Masks". No public code: written from the paper. The step function with a long-tailed derivative
and the exp(-s) threshold regulariser are those of dynamic sparse training (J. Liu et al., ICLR
2020), which the paper cites as [35] / [73].

For a feature vector x in R^d a mask has a learnable vector r in R^d and a learnable threshold
s in R^d:

    p   = F(|r| - s)        eq. 8, F the unit step (eq. 7): 1 where t >= 0, else 0
    m   = r * p             eq. 9 (the mask vector)
    x_c = x * m             eq. 10 (the selected, "domain-invariant" features)
    L_sparse = sum_i exp(-s_i)   eq. 12 (raises the thresholds, so fewer features pass)

F has no useful derivative; eq. 11 replaces it in the backward pass by

    dF/dt = 2 - 4|t|  for |t| <= 0.4,   0.4  for 0.4 < |t| <= 1,   0  otherwise

(`step_derivative`, applied by the autograd Function `UnitStep`). A feature whose |r| - s falls
below -1 gets no gradient through F any more: it stays removed unless r or s moves back.

Initialisation (not given by the paper): r = `r_init` (1: the mask starts as the identity on every
feature), s = `s_init` (0, as dynamic sparse training initialises its thresholds), so every
feature starts selected (|r| - s = 1).

Deviations: none in the equations; the initial values above are this module's choice.
"""

from __future__ import annotations

import torch
from torch import nn

# Eq. 11's breakpoints: the linear part ends at |t| = 0.4 (where 2 - 4|t| = 0.4), the flat tail at |t| = 1.
STEP_KNEE = 0.4
STEP_TAIL = 1.0


def step_derivative(t: torch.Tensor) -> torch.Tensor:
    """Eq. 11: the derivative the unit step is given in the backward pass (same shape as t)."""
    a = t.abs()
    return torch.where(a <= STEP_KNEE, 2.0 - 4.0 * a,
                       torch.where(a <= STEP_TAIL, torch.full_like(a, STEP_KNEE), torch.zeros_like(a)))


class UnitStep(torch.autograd.Function):
    """F(t) = 1 where t >= 0, else 0 (eq. 7), with eq. 11's derivative in the backward pass."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(t)
        return (t >= 0).to(t.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (t,) = ctx.saved_tensors
        return grad_output * step_derivative(t)


def unit_step(t: torch.Tensor) -> torch.Tensor:
    return UnitStep.apply(t)


class LearnableMask(nn.Module):
    """x -> x * m over the last dimension (eqs. 6-10), with `sparsity()` = eq. 12.

    `selected()` is the binary p (1 = the feature passes), `vector()` the mask m = r * p,
    `complement_vector()` r * (1 - p) (the removed features, S2LIF's "domain-specific" ones).
    """

    def __init__(self, dim: int, r_init: float = 1.0, s_init: float = 0.0):
        super().__init__()
        self.dim = int(dim)
        self.r = nn.Parameter(torch.full((self.dim,), float(r_init)))
        self.s = nn.Parameter(torch.full((self.dim,), float(s_init)))

    def margin(self) -> torch.Tensor:
        """|r| - s, (d,): a feature passes where it is >= 0."""
        return self.r.abs() - self.s

    def selected(self) -> torch.Tensor:
        """p = F(|r| - s), (d,) of 0/1 (eq. 8), differentiable through eq. 11."""
        return unit_step(self.margin())

    def vector(self) -> torch.Tensor:
        """m = r * p, (d,) (eq. 9)."""
        return self.r * self.selected()

    def complement_vector(self) -> torch.Tensor:
        """r * (1 - p), (d,): the mask of the features m removes."""
        return self.r * (1.0 - self.selected())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x_c = x * m (eq. 10), m broadcast over the leading dimensions of x (..., d)."""
        return x * self.vector().to(x.dtype)

    def sparsity(self) -> torch.Tensor:
        """L_sparse = sum_i exp(-s_i) (eq. 12), a scalar."""
        return torch.exp(-self.s).sum()

    def kept_share(self) -> float:
        """The share of features that pass (for logs)."""
        with torch.no_grad():
            return float((self.margin() >= 0).float().mean())

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class ModalityMasks(nn.Module):
    """One `LearnableMask` per modality over its unimodal representation: the "MSA + Mask" rows of
    S2LIF's Tables 1-2 (`mult@mask-*`, `almt@mask-*`).

    The paper says only that its learnable masks are added to the baselines (Sec. 4.3: "With the
    addition of our multimodal learnable masks, the traditional models also gain the ability of DG").
    Here every modality's representation (..., d_m) is multiplied by its mask vector (eq. 10) from the
    first step on, and the model adds `weight * sum_m L_sparse_m` (eq. 12) to its task loss, as S2LIF's
    eqs. 17-18 do with alpha; no learning order, no warm-up, no key-frame mask (those are S2LIF's).
    """

    def __init__(self, dims: dict[str, int], weight: float, r_init: float = 1.0, s_init: float = 0.0):
        super().__init__()
        self.weight = float(weight)
        self.masks = nn.ModuleDict({m: LearnableMask(d, r_init, s_init) for m, d in dims.items()})

    def forward(self, m: str, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_m) -> x * m_m, unchanged for a modality without a mask."""
        return self.masks[m](x) if m in self.masks else x

    def penalty(self) -> torch.Tensor:
        """weight * sum over modalities of eq. 12, a scalar added to the task loss."""
        return self.weight * sum(mask.sparsity() for mask in self.masks.values())

    def kept_shares(self) -> dict[str, float]:
        """modality -> the share of its features the mask passes (logged per step)."""
        return {m: mask.kept_share() for m, mask in self.masks.items()}
