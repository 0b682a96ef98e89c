"""Model-specific properties: TFN's tensor fusion, linear_probe's ground-truth feature selection,
TextInput."""

from __future__ import annotations

import math

import pytest
import torch

from msabench.api import MODELS
from msabench.api.conformance import make_input_spec, random_batch
from msabench.api.model import config_from_flat
from msabench.api.text import TextInput
from msabench.core.errors import UserError
from msabench.models.linear_probe import LinearProbeConfig
from msabench.models.tfn import TFN, TFNConfig, tensor_fusion

# -- TFN --------------------------------------------------------------------------------------


def test_tensor_fusion_keeps_unimodal_and_bimodal_terms():
    g = torch.Generator().manual_seed(0)
    a, v, t = (torch.randn(5, d, generator=g) for d in (3, 4, 2))
    fused = tensor_fusion([a, v, t])
    assert fused.shape == (5, 4 * 5 * 3)
    cube = fused.reshape(5, 4, 5, 3)
    torch.testing.assert_close(cube[:, 0, 0, 0], torch.ones(5))
    torch.testing.assert_close(cube[:, 1:, 0, 0], a)  # unimodal terms survive
    torch.testing.assert_close(cube[:, 0, 1:, 0], v)
    torch.testing.assert_close(cube[:, 0, 0, 1:], t)
    torch.testing.assert_close(cube[:, 1:, 1:, 0], torch.einsum("bi,bj->bij", a, v))  # bimodal
    torch.testing.assert_close(cube[:, 0, 1:, 1:], torch.einsum("bi,bj->bij", v, t))
    torch.testing.assert_close(cube[:, 1:, 1:, 1:], torch.einsum("bi,bj,bk->bijk", a, v, t))  # trimodal


def test_tensor_fusion_of_one_and_two_vectors():
    a, t = torch.randn(2, 3), torch.randn(2, 5)
    torch.testing.assert_close(tensor_fusion([a]), torch.cat([torch.ones(2, 1), a], dim=1))
    fused = tensor_fusion([a, t]).reshape(2, 4, 6)
    torch.testing.assert_close(fused[:, 1:, 0], a)
    torch.testing.assert_close(fused[:, 0, 1:], t)


@pytest.mark.parametrize("modalities", [("t", "a", "v"), ("t", "v"), ("a",)])
def test_tfn_fusion_size_is_product_of_widths_plus_one(modalities):
    spec = make_input_spec(modalities)
    cfg = TFN.tiny()
    model = TFN(cfg, spec).eval()
    widths = {"t": cfg.text_out, "a": cfg.audio_hidden, "v": cfg.video_hidden}
    size = math.prod(widths[m] + 1 for m in modalities)
    assert model.post_fusion_layer_1.in_features == size
    with torch.no_grad():
        out = model(random_batch(spec, batch_size=4))
    fused = out.features["fusion"]
    assert fused.shape == (4, size)
    # the unimodal vectors sit in the fused tensor (index 0 of the other factors is the 1)
    cube = fused.reshape(4, *[widths[m] + 1 for m in ("a", "v", "t") if m in modalities])
    for axis, m in enumerate(m for m in ("a", "v", "t") if m in modalities):
        index = [slice(None)] + [0] * len(modalities)
        index[axis + 1] = slice(1, None)
        torch.testing.assert_close(cube[tuple(index)], out.features[m])


def test_tfn_defaults_and_presets_follow_mmsa():
    assert TFNConfig() == config_from_flat(TFNConfig, TFN.PRESETS["mosi"])
    mosei = config_from_flat(TFNConfig, TFN.PRESETS["mosei"])
    assert (mosei.text_hidden, mosei.audio_hidden, mosei.video_hidden, mosei.text_out,
            mosei.post_fusion_dim) == (128, 16, 128, 128, 16)
    assert TFN.PRESETS["sims"]["train.lr"] == 5e-4
    spec = make_input_spec()
    model = TFN(TFN.tiny(), spec).eval()
    with torch.no_grad():
        pred = model(random_batch(spec)).pred
    assert ((pred > -3) & (pred < 3)).all()  # sigmoid * 6 - 3


# -- linear_probe -----------------------------------------------------------------------------

GROUPS = {
    "t": {"invariant": [1, 4], "spurious": [0, 7, 9], "style": [2]},
    "a": {"invariant": [5], "spurious": [2, 3], "style": []},
    "v": {"invariant": [0, 8], "spurious": [], "style": [1]},
}


@pytest.mark.parametrize("features", ["invariant", "spurious"])
def test_linear_probe_selects_exactly_the_ground_truth(features):
    spec = make_input_spec(feature_groups=GROUPS)
    model = MODELS.get("linear_probe")(LinearProbeConfig(features=features), spec).eval()
    expected = {m: sorted(GROUPS[m][features]) for m in ("t", "a", "v")}
    assert model.indices == expected
    n = sum(len(ix) for ix in expected.values())
    assert model.linear.in_features == n
    batch = random_batch(spec, batch_size=4, seed=3)
    with torch.no_grad():
        base = model(batch)
    assert base.features["input"].shape == (4, n)
    # behaviour: only the selected input features move the output
    for attr, m in (("audio", "a"), ("vision", "v")):
        for i in range(spec.dims[m]):
            x = getattr(batch, attr).clone()
            x[..., i] += 5.0 * getattr(batch, f"{attr}_mask")
            probe = random_batch(spec, batch_size=4, seed=3)
            setattr(probe, attr, x)
            with torch.no_grad():
                moved = not torch.allclose(model(probe).pred, base.pred)
            assert moved == (i in expected[m]), (m, i)


def test_linear_probe_all_reads_every_feature():
    spec = make_input_spec(feature_groups=GROUPS)
    model = MODELS.get("linear_probe")(LinearProbeConfig(features="all"), spec)
    assert model.linear.in_features == sum(spec.dims.values())


def test_linear_probe_ground_truth_needs_synthetic_data():
    spec = make_input_spec()  # real-data-like: no feature groups
    with pytest.raises(UserError, match="synthetic"):
        MODELS.get("linear_probe")(LinearProbeConfig(features="invariant"), spec)
    with pytest.raises(UserError, match="invariant"):
        MODELS.get("linear_probe")(LinearProbeConfig(features="invarient"), spec)
    tokens = make_input_spec(text_kind="tokens", ground_truth=True)
    with pytest.raises(UserError, match="token"):
        MODELS.get("linear_probe")(LinearProbeConfig(features="spurious"), tokens)


def test_linear_probe_learns_from_invariant_features():
    """On data whose label lives in the invariant features, the invariant probe fits it."""
    from msabench.api.context import TrainContext, build_optimizers, task_loss_fn

    spec = make_input_spec(("a", "v"), ground_truth=True)
    torch.manual_seed(0)
    model = MODELS.get("linear_probe")(LinearProbeConfig(features="invariant"), spec)
    ctx = TrainContext(model=model, optimizers=build_optimizers(model, {"train.lr": 0.05}),
                       loss_fn=task_loss_fn("regression"))
    batch = random_batch(spec, batch_size=32, seed=1)
    for _ in range(150):
        model.training_step(batch, ctx)
    with torch.no_grad():
        mae = float((model(batch).pred - batch.y).abs().mean())
    assert mae < 0.6 * float(batch.y.abs().mean())


# -- TextInput --------------------------------------------------------------------------------


def test_text_input_features_pass_through_or_project():
    spec = make_input_spec(("t",))
    batch = random_batch(spec, batch_size=3)
    x, mask = TextInput(spec)(batch)
    assert torch.equal(x, batch.text_feats) and torch.equal(mask, batch.text_mask)
    proj = TextInput(spec, dim=5)
    assert proj(batch)[0].shape == (3, spec.max_lens["t"], 5) and proj.out_dim == 5


def test_text_input_tokens_embed_with_padding_row():
    spec = make_input_spec(("t",), text_kind="tokens")
    batch = random_batch(spec, batch_size=3)
    enc = TextInput(spec, dim=6)
    x, mask = enc(batch)
    assert x.shape == (3, spec.max_lens["t"], 6)
    assert enc.embedding.padding_idx == spec.special_ids["pad"]
    assert torch.equal(x[~mask], torch.zeros_like(x[~mask]))
    assert (batch.text_ids[~mask] == spec.special_ids["pad"]).all()


@pytest.mark.parametrize("task,dtype,shape", [("regression", torch.float32, (6,)),
                                              ("classification", torch.int64, (6,)),
                                              ("multilabel", torch.float32, (6, 4))])
def test_random_batch_labels(task, dtype, shape):
    spec = make_input_spec(task=task)
    batch = random_batch(spec, batch_size=6, seed=2)
    assert batch.y.dtype == dtype and tuple(batch.y.shape) == shape
    if task == "regression":
        assert (batch.y.abs() <= 3).all()
    elif task == "classification":
        assert set(batch.y.tolist()) <= {0, 1, 2}
    else:
        assert set(batch.y.flatten().tolist()) <= {0.0, 1.0}
    for m in ("audio", "vision", "text"):
        mask = getattr(batch, f"{m}_mask")
        assert mask[:, 0].all() and (~mask).any()  # real positions first, some padding
    again = random_batch(spec, batch_size=6, seed=2)
    assert torch.equal(again.audio, batch.audio) and torch.equal(again.y, batch.y)
