"""`s2lif`: the learnable mask (eqs. 6-12) and its step's custom gradient (eq. 11), the learning
orders as stages with the stopping veto, keyframe-aware masking (A.1), the Table 3 switches, the
named features for `feature-analysis`, and the variants the S2LIF templates name."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from msabench.api import MODELS, UserError, config_from_flat
from msabench.api.conformance import make_input_spec, random_batch, training_context
from msabench.core.config import ModelSpec, parse_model_spec, resolve_config
from msabench.models.layers.learnable_mask import LearnableMask, UnitStep, step_derivative
from msabench.models.s2lif import BOTH, FIRST, WARMUP, KeyframeMask, S2LIFConfig, local_difference, stage_at

S2LIF = MODELS.get("s2lif")

pytestmark = pytest.mark.time_limit(60)


def _spec(modalities=("t", "v"), **kw):
    return make_input_spec(modalities, task="classification", **kw)


def _model(cfg: S2LIFConfig | None = None, spec=None, seed=0):
    torch.manual_seed(seed)
    return S2LIF(cfg or S2LIF.tiny(), spec or _spec())


# -- eq. 11: the step's custom gradient -------------------------------------------------------------

def _eq11(t: float) -> float:
    """Eq. 11 as printed, written out case by case."""
    if -0.4 <= t <= 0.4:
        return 2.0 - 4.0 * abs(t)
    if 0.4 <= abs(t) <= 1.0:
        return 0.4
    return 0.0


def test_step_forward_is_the_unit_step_and_its_gradient_is_eq11_on_a_grid():
    grid = np.round(np.arange(-1.5, 1.5001, 0.05), 4).tolist() + [-1.0001, 0.9999, 1.0001, 0.3999, 0.4001]
    t = torch.tensor(grid, dtype=torch.float64, requires_grad=True)
    out = UnitStep.apply(t)
    assert out.tolist() == [1.0 if v >= 0 else 0.0 for v in grid]  # eq. 7: F(0) = 1
    upstream = torch.linspace(0.5, 2.0, len(grid), dtype=torch.float64)  # the chain rule scales it
    (out * upstream).sum().backward()
    expected = torch.tensor([_eq11(v) for v in grid], dtype=torch.float64) * upstream
    torch.testing.assert_close(t.grad, expected, rtol=0, atol=1e-12)
    # spot values: the peak, the knee (continuous there), the tail, beyond it
    assert step_derivative(torch.tensor([0.0, 0.2, 0.4, -0.7, 1.0, 1.2])).tolist() == pytest.approx(
        [2.0, 1.2, 0.4, 0.4, 0.4, 0.0])


def test_learnable_mask_equations_6_to_12_and_their_gradients():
    mask = LearnableMask(4)
    with torch.no_grad():
        mask.r.copy_(torch.tensor([1.0, -0.5, 0.2, 2.0]))
        mask.s.copy_(torch.tensor([0.0, 0.7, 0.1, 0.5]))
    t = torch.tensor([1.0, -0.2, 0.1, 1.5])  # |r| - s
    assert mask.selected().tolist() == [1.0, 0.0, 1.0, 1.0]  # eq. 8
    torch.testing.assert_close(mask.vector(), torch.tensor([1.0, 0.0, 0.2, 2.0]))  # eq. 9
    x = torch.tensor([[3.0, 4.0, 5.0, 6.0], [1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(mask(x), x * torch.tensor([1.0, 0.0, 0.2, 2.0]))  # eq. 10
    torch.testing.assert_close(mask.complement_vector(), torch.tensor([0.0, -0.5, 0.0, 0.0]))
    torch.testing.assert_close(mask.sparsity(), torch.exp(-mask.s.detach()).sum())  # eq. 12
    # d/ds of sum_i w_i x_i m_i: -F'(t) r (w . x), and eq. 12's regulariser adds -exp(-s)
    w = torch.tensor([0.3, -1.0, 2.0, 0.5])
    loss = (mask(x) * w).sum() + mask.sparsity()
    loss.backward()
    wx = (w * x).sum(dim=0)
    r, s = mask.r.detach(), mask.s.detach()
    p = (t >= 0).float()
    torch.testing.assert_close(mask.s.grad, -step_derivative(t) * r * wx - torch.exp(-s))
    torch.testing.assert_close(mask.r.grad, wx * p + step_derivative(t) * torch.sign(r) * r * wx)


# -- stages: learning orders, warm-up, the veto --------------------------------------------------------

def _labels(order, modalities=("t", "v"), total=10, **kw):
    cfg = dataclasses.replace(S2LIFConfig(), order=order, warmup_epochs=3, first_stage_share=0.5, **kw)
    return [(s.code, s.label) for s in (stage_at(e, total, cfg, modalities) for e in range(total))]


def test_learning_orders_as_stages():
    t2v = _labels("t2v")
    assert t2v[:3] == [(WARMUP, "warmup")] * 3
    assert t2v[3:6] == [(FIRST, "text")] * 3 and t2v[6] == (FIRST, "text")  # round(0.5 * 7) = 4 epochs
    assert t2v[7:] == [(BOTH, "vision|text")] * 3
    v2t = _labels("v2t")
    assert v2t[3] == (FIRST, "vision") and v2t[-1] == (BOTH, "text|vision")
    assert _labels("tv")[3:] == [(BOTH, "text&vision")] * 7
    assert _labels("t2v", modalities=("v",))[3:] == [(FIRST, "vision")] * 7
    # a short run shortens the warm-up first, so that every stage gets an epoch
    assert [c for c, _ in _labels("t2v", total=3)] == [WARMUP, FIRST, BOTH]
    assert [c for c, _ in _labels("t2v", total=2)] == [FIRST, BOTH]
    assert [c for c, _ in _labels("tv", total=2)] == [WARMUP, BOTH]


def test_only_the_last_stage_is_complete_so_patience_ends_only_it():
    model = _model(dataclasses.replace(S2LIF.tiny(), warmup_epochs=2))
    ctx = SimpleNamespace(epoch=0, epochs=10, stage="", train_cfg={"train.patience": 2})
    seen = []
    for epoch in range(10):
        ctx.epoch = epoch
        model.on_epoch_start(ctx)
        seen.append((ctx.stage, model.epoch_is_complete(ctx)))
    assert [s for s, _ in seen] == ["warmup"] * 2 + ["text"] * 4 + ["vision|text"] * 4
    assert [c for _, c in seen] == [False] * 6 + [True] * 4


def test_a_run_too_short_for_the_last_stage_is_refused_at_its_first_epoch():
    model = _model()
    with pytest.raises(UserError, match="train.epochs at least 2"):
        model.on_epoch_start(SimpleNamespace(epoch=0, epochs=1, stage="", train_cfg={}))


def _grads_after_step(model, spec, code):
    """Which parameters a training step at stage `code` gives a gradient (lr 0: nothing moves)."""
    ctx = training_context(model, spec, lr=1e-3)
    got = {}
    hooks = [p.register_hook(lambda g, n=n: got.__setitem__(n, float(g.abs().sum())))
             for n, p in model.named_parameters()]
    model.train()
    model.stage_code.fill_(code)
    model.training_step(random_batch(spec, batch_size=6, seed=1), ctx)
    for h in hooks:
        h.remove()
    return {n for n, v in got.items() if v > 0}


def test_first_stage_trains_the_condition_modality_only_and_second_stage_detaches_it():
    spec = _spec()
    model = _model(spec=spec)
    first = _grads_after_step(model, spec, FIRST)
    assert any(n.startswith("masks.t.") for n in first) and any(n.startswith("encoders.t.") for n in first)
    assert not any(n.startswith(("masks.v.", "encoders.v.", "frame_encoder.", "keyframe.", "joint_head."))
                   for n in first)
    warm = _grads_after_step(model, spec, WARMUP)
    assert not any(n.startswith("masks.") for n in warm)  # masks off, no sparsity term in the warm-up
    assert any(n.startswith("joint_head.") for n in warm) and any(n.startswith("keyframe.") for n in warm)
    # second stage: the joint loss does not reach the text branch (detached condition) ...
    branches = {m: model._branch(random_batch(spec, 6, 2), m, masks_on=True) for m in ("t", "v")}
    model.zero_grad()
    model._joint_logits(branches, detach_first=True).sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith(("encoders.t.", "masks.t.")))
    assert model.masks["v"].s.grad is not None
    # ... but the text branch still trains on L_t (eq. 19)
    both = _grads_after_step(model, spec, BOTH)
    assert any(n.startswith("masks.t.") for n in both) and any(n.startswith("masks.v.") for n in both)


def test_prediction_comes_from_the_first_classifier_in_the_first_stage_only():
    spec = _spec()
    model = _model(spec=spec).eval()
    batch = random_batch(spec, batch_size=5, seed=3)
    shift = 3.0 * torch.randn_like(batch.vision) * batch.vision_mask[..., None]
    other = dataclasses.replace(batch, vision=batch.vision + shift)
    preds = {}
    for code in (WARMUP, FIRST, BOTH):
        model.stage_code.fill_(code)
        with torch.no_grad():
            preds[code] = (model(batch).pred, model(other).pred)
    torch.testing.assert_close(*preds[FIRST])  # the text classifier: vision does not matter
    assert not torch.allclose(*preds[BOTH]) and not torch.allclose(*preds[WARMUP])
    # the stage is a buffer: a checkpoint predicts with the classifier of the stage it was saved in
    assert "stage_code" in model.state_dict()


# -- keyframe-aware masking (A.1) -------------------------------------------------------------------

def test_local_difference_eq20_with_replicate_padding_at_each_samples_real_ends():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 3)
    lengths = [6, 4]
    mask = torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]
    k = 2
    got = local_difference(x, mask, k)
    for b, n in enumerate(lengths):
        for i in range(n):
            neighbours = [x[b, min(max(j, 0), n - 1)] for j in range(i - k, i + k + 1) if j != i]
            torch.testing.assert_close(got[b, i], torch.stack(neighbours).mean(0) - x[b, i])
    still = torch.ones(1, 5, 2)  # a still sequence has no local difference
    assert got.shape == x.shape and local_difference(still, torch.ones(1, 5, dtype=torch.bool), 2).abs().max() == 0


def test_keyframe_decisions_reconstruction_and_padding():
    torch.manual_seed(0)
    module = KeyframeMask(8, 2, stride=2)
    x = torch.randn(3, 7, 8)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 3, 5])[:, None]
    module.eval()
    assert module(x, mask)[2] is None  # evaluation skips the training-only loss ...
    kept, keep, recon = module(x, mask, reconstruct=True)  # ... unless asked for
    assert set(keep.unique().tolist()) <= {0.0, 1.0} and keep[~mask].abs().sum() == 0
    torch.testing.assert_close(kept, x * keep[..., None])
    with torch.no_grad():  # a decision MLP that keeps every frame: nothing to reconstruct
        module.decide[-1].bias.copy_(torch.tensor([-50.0, 50.0]))
    kept, keep, recon = module(x, mask, reconstruct=True)
    assert torch.equal(keep, mask.float()) and float(recon.detach()) == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():  # ... one that drops every frame: the GRU sees zeros, the loss is positive
        module.decide[-1].bias.copy_(torch.tensor([50.0, -50.0]))
    assert float(module(x, mask, reconstruct=True)[2].detach()) > 0
    module.train()  # sampled decisions are trained through the straight-through estimator
    module.decide[-1].bias.data.zero_()
    _, keep, recon = module(x, mask)
    recon.backward()
    assert module.decide[0].weight.grad is not None and module.decide[0].weight.grad.abs().sum() > 0


def test_inference_parameters_leave_out_the_reconstruction_gru():
    model = _model()
    total = sum(p.numel() for p in model.parameters())
    assert model.inference_parameter_count() == total - sum(p.numel() for p in model.keyframe.gru.parameters())
    plain = _model(dataclasses.replace(S2LIF.tiny(), keyframe_mask=False))
    assert plain.inference_parameter_count() == sum(p.numel() for p in plain.parameters())


def test_without_keyframe_mask_there_is_no_reconstruction_loss():
    spec = _spec()
    for on in (True, False):
        model = _model(dataclasses.replace(S2LIF.tiny(), keyframe_mask=on), spec)
        model.stage_code.fill_(BOTH)
        logged = model.training_step(random_batch(spec, 6, 0), training_context(model, spec))
        assert ("recon" in logged) is on and hasattr(model, "keyframe")
        assert (model.keyframe is not None) is on


# -- Table 3 switches ------------------------------------------------------------------------------------

def _with_mask(model, m, selected):
    with torch.no_grad():
        model.masks[m].r.fill_(1.0)
        model.masks[m].s.copy_(torch.where(selected, torch.tensor(0.0), torch.tensor(2.0)))


def test_evidence_switches_read_selected_removed_or_noise():
    spec = _spec()
    selected = torch.tensor([True, False] * 4)
    x = torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.bool)
    out = {}
    for evidence in ("selected", "removed", "noise"):
        model = _model(dataclasses.replace(S2LIF.tiny(), evidence=evidence), spec)
        _with_mask(model, "t", selected)
        out[evidence] = model._evidence_tokens("t", x, mask, masks_on=True)[0]
        out[evidence + "/warm-up"] = model._evidence_tokens("t", x, mask, masks_on=False)[0]
    torch.testing.assert_close(out["selected"], x * selected.float())
    torch.testing.assert_close(out["removed"], x * (~selected).float())
    assert (out["noise"][..., ~selected] != 0).all() and not torch.allclose(out["noise"], out["selected"])
    # the warm-up (masks off, m = 1): the features themselves, nothing removed, or noise all the same
    torch.testing.assert_close(out["selected/warm-up"], x)
    assert not out["removed/warm-up"].any()
    assert not torch.allclose(out["noise/warm-up"], x) and out["noise/warm-up"].std() > 0.5


# -- named features and input-space masks ---------------------------------------------------------------

def test_named_features_are_taken_before_the_mask_with_the_binary_mask_beside_them():
    spec = _spec()
    model = _model(spec=spec).eval()
    model.stage_code.fill_(BOTH)
    _with_mask(model, "t", torch.tensor([True, False] * 4))
    with torch.no_grad():
        feats = model(random_batch(spec, 6, 0)).features
    assert set(feats) == {"text", "text:mask", "vision", "vision:mask"}
    assert feats["text:mask"][0].tolist() == [1.0, 0.0] * 4 and feats["text:mask"].shape == feats["text"].shape
    assert (feats["text"][:, 1::2] != 0).any()  # the removed features are still there (before the mask)
    assert model.feature_layout() == {}  # hidden features: no input index


def test_input_space_masks_map_to_input_features_and_are_scored_against_the_ground_truth():
    from msabench.evaluation.feature_analysis import _blocks, analyse_features

    spec = _spec(ground_truth=True)  # t: 12 features (invariant 0-3), v: 9 (invariant 0-2)
    model = _model(dataclasses.replace(S2LIF.tiny(), mask_space="input"), spec).eval()
    assert model.masks["t"].dim == 12 and model.masks["v"].dim == 9
    _with_mask(model, "t", torch.arange(12) < 6)  # 4 invariant + 2 spurious kept
    _with_mask(model, "v", torch.arange(9) < 3)
    with torch.no_grad():
        feats = {k: v.numpy() for k, v in model(random_batch(spec, 40, 0)).features.items()}
    blocks, columns, masks = _blocks(model, feats)
    assert columns == {"text/t": list(range(12)), "vision/v": list(range(9))}
    y = np.arange(40) % 3
    truth = {m: spec.feature_groups[m] for m in ("t", "v")}
    analysis = analyse_features({"d": blocks}, {"d": y}, columns=columns, masks={"d": masks}, ground_truth=truth)
    assert analysis["blocks"]["text/t"]["selection"] == "model-mask"
    assert analysis["ground_truth"]["text/t"]["precision"] == pytest.approx(4 / 6)
    assert analysis["ground_truth"]["vision/v"]["precision"] == pytest.approx(1.0)


def test_input_space_masks_learn_to_keep_the_label_carrying_features():
    """random_batch puts the label signal in the ground truth's invariant features (the first third);
    with a strong sparsity weight the input-space mask keeps some of them (they are redundant copies of
    one signal, so not necessarily all) and drops the pure-noise features."""
    spec = _spec(("v",), ground_truth=True, dims={"v": 12})
    cfg = dataclasses.replace(S2LIF.tiny(), mask_space="input", sparsity_weight=0.2, warmup_epochs=0,
                              keyframe_mask=False)
    model = _model(cfg, spec)
    batches = [random_batch(spec, 32, seed=s) for s in range(4)]
    ctx = training_context(model, spec, lr=0.05, epochs=150)
    model.stage_code.fill_(FIRST)
    model.train()
    for step in range(150):
        model.training_step(batches[step % 4], ctx)
    kept = model.masks["v"].selected().bool()
    invariant = torch.zeros(12, dtype=torch.bool)
    invariant[spec.feature_groups["v"]["invariant"]] = True
    assert int(kept[invariant].sum()) >= 2, kept
    precision = float(kept[invariant].sum() / kept.sum())
    assert precision >= 0.75, (precision, kept)  # the invariant share is 1/3


def test_input_space_masks_need_text_features():
    with pytest.raises(UserError, match="text.encoder=features"):
        _model(dataclasses.replace(S2LIF.tiny(), mask_space="input"), _spec(text_kind="tokens"))


# -- modalities, config, variants ---------------------------------------------------------------------------

def test_unimodal_models_and_model_modalities():
    for mods in (("t",), ("v",)):
        model = _model(spec=_spec(mods))
        assert model.modalities == mods and model.joint_head is None
    model = _model(dataclasses.replace(S2LIF.tiny(), modalities="v"), _spec())
    assert model.modalities == ("v",) and "t" not in model.masks
    with pytest.raises(UserError, match="--modalities t"):
        _model(dataclasses.replace(S2LIF.tiny(), modalities="t"), _spec(("v",)))
    with pytest.raises(UserError, match="model.order"):
        _model(dataclasses.replace(S2LIF.tiny(), order="t->v"))


def test_variants_cover_every_template_row_and_resolve():
    from msabench.protocols.templates import TEMPLATES

    named = {r.model for name in ("s2lif-table1", "s2lif-table2", "s2lif-table3")
             for r in TEMPLATES.get(name).rows if r.model and r.model.startswith("s2lif@")}
    assert named == {f"s2lif@{o}-{m}" for o in ("t2v", "v2t", "tv") for m in ("frozen", "finetune")} | {
        "s2lif@add-noise", "s2lif@using-ds", "s2lif@no-keyframe-mask"}
    for label in sorted(named) + ["s2lif@t-frozen", "s2lif@t-finetune", "s2lif@v", "s2lif@input-mask"]:
        assert parse_model_spec(label).variant in S2LIF.VARIANTS
    flat = resolve_config(S2LIF, ModelSpec("s2lif", "v2t-finetune"), "mosei")
    cfg = config_from_flat(S2LIF.config_cls, flat)
    assert cfg.order == "v2t" and flat["text.frozen"] is False
    assert flat["text.encoder"] == "google/electra-base-discriminator"  # ELECTRA by default (Sec. 4.2)
    assert (flat["train.lr"], flat["train.batch_size"], flat["train.epochs"]) == (7e-5, 16, 200)
    assert config_from_flat(S2LIF.config_cls, resolve_config(S2LIF, ModelSpec("s2lif", "using-ds"), "mosi")
                            ).evidence == "removed"
    flat = resolve_config(S2LIF, ModelSpec("s2lif", "input-mask"), "mosi")
    assert flat["text.encoder"] == "features" and flat["model.mask_space"] == "input"
