"""S2LIF's "MSA + Mask" rows: `mult@mask-*` and `almt@mask-*` put a learnable mask (S2LIF eqs. 6-12) on
the unimodal representations and add its sparsity term to the task loss."""

from __future__ import annotations

import pytest
import torch

from msabench.api import MODELS, config_from_flat
from msabench.api.conformance import make_input_spec, random_batch, training_context
from msabench.core.config import ModelSpec, resolve_config

MODELS_WITH_MASK = ("mult", "almt")


def _model(name: str, variant: str | None, seed: int = 0):
    cls = MODELS.get(name)
    flat = resolve_config(cls, ModelSpec(name, variant), "mosi", tiny=True)
    spec = make_input_spec(("t", "a", "v"), task="regression")
    torch.manual_seed(seed)
    return cls(config_from_flat(cls.config_cls, flat), spec), spec, flat


@pytest.mark.parametrize("name", MODELS_WITH_MASK)
def test_mask_variants_set_the_mask_and_the_text_encoder_mode(name):
    for variant, frozen in (("mask-frozen", True), ("mask-finetune", False)):
        model, _, flat = _model(name, variant)
        assert flat["model.feature_mask"] is True and flat["text.frozen"] is frozen
        assert set(model.feature_masks.masks) == {"t", "a", "v"}
    plain, _, flat = _model(name, None)
    assert flat["model.feature_mask"] is False and plain.feature_masks is None


@pytest.mark.parametrize("name", MODELS_WITH_MASK)
def test_a_closed_mask_cuts_its_modality_off(name):
    """With every audio feature removed (|r| - s < 0), the prediction no longer depends on audio."""
    model, spec, _ = _model(name, "mask-frozen")
    model.eval()
    batch = random_batch(spec, batch_size=4, seed=0)
    other = random_batch(spec, batch_size=4, seed=0)
    other.audio = other.audio + torch.randn_like(other.audio)
    with torch.no_grad():
        assert not torch.allclose(model(batch).pred, model(other).pred)
        model.feature_masks.masks["a"].s.fill_(5.0)
        torch.testing.assert_close(model(batch).pred, model(other).pred)


@pytest.mark.parametrize("name", MODELS_WITH_MASK)
def test_training_adds_the_weighted_sparsity_term_and_moves_the_thresholds(name):
    model, spec, _ = _model(name, "mask-finetune")
    masks = model.feature_masks
    masks.weight = 1e3  # the sparsity term dominates the task's gradient on the thresholds
    expected_penalty = masks.weight * sum(float(torch.exp(-m.s.detach()).sum()) for m in masks.masks.values())
    before = {m: mask.s.detach().clone() for m, mask in masks.masks.items()}
    model.train()
    logged = model.training_step(random_batch(spec, batch_size=6, seed=1), training_context(model, spec))
    assert logged["total"] == pytest.approx(logged["task"] + expected_penalty, rel=1e-5)
    assert {"kept_t", "kept_a", "kept_v"} <= set(logged)
    for m, mask in masks.masks.items():  # eq. 12's gradient, -weight * exp(-s), raises every threshold
        assert (mask.s.detach() > before[m]).all(), m
