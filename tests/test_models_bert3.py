"""`tfr_net` (TFR-Net) and `almt` (ALMT): parameter counts against MMSA, the reconstruction of the
dropped positions, the self-drawn training view, optimiser groups, variants and presets."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from msabench.api import MODELS, MissingView, config_from_flat
from msabench.api.conformance import make_input_spec, random_batch, training_context
from msabench.core.config import ModelSpec, resolve_config
from msabench.models.tfr_net import reconstruction_loss

TFR = MODELS.get("tfr_net")

# MMSA 2.2.1 TFR_NET built with config_regression.json "tfr_net"/"mosi", feature_dims (768, 5, 20),
# seq_lens (50, 375, 500), its BertTextEncoder replaced by BertModel(BertConfig()) (random init):
# sum of p.numel() over model.parameters() = 124,332,860, of which text_model 109,482,240 (BERT
# with its pooler, 590,592) and the rest as below (/tmp script in the branch report).
MMSA_TFR_TOTAL = 124_332_860
MMSA_TFR_BERT = 109_482_240
MMSA_TFR_PARTS = {"proj": 23_040 + 750 + 1_800, "intra": 3 * 33_630, "cross": 6 * 33_630,
                  "temporal": 92_050 + 5_077_875 + 9_020_500, "generator": 69_888 + 455 + 1_820,
                  "fusion_and_classifier": 259_772}


def _mosi_spec(task="regression"):
    return make_input_spec(("t", "a", "v"), task=task, dims={"t": 768, "a": 5, "v": 20},
                           max_lens={"t": 50, "a": 375, "v": 500})


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _tiny(cls, spec, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(dataclasses.replace(cls.tiny(), **overrides), spec)


def _with_missing(batch, drop: dict, complete: dict):
    """The batch as the missing-rate protocol hands it over: masked fields, drop masks, complete inputs."""
    fields = {}
    for m, d in drop.items():
        name = {"t": "text_feats", "a": "audio", "v": "vision"}[m]
        fields[name] = complete[m].masked_fill(d.unsqueeze(-1), 0.0)
    return dataclasses.replace(batch, missing=MissingView(drop=drop, complete=complete), **fields)


def _drops(batch, seed=0, rate=0.5):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in ("t", "a", "v"):
        mask = batch.modality(m)[1]
        out[m] = (torch.rand(mask.shape, generator=g) < rate) & mask
        out[m][0, 0] = True  # at least one dropped position per modality
    return out


# -- TFR-Net -----------------------------------------------------------------------------------

def test_tfr_parameter_count_at_mosi_shapes_equals_mmsa_without_bert():
    """Everything but BERT equals MMSA's count. The BERT part is the harness's bert-base-uncased
    encoder, 108,891,648 (`msabench models --params mosi`: 123,742,268 in all): MMSA's from_pretrained
    also builds BERT's pooler (590,592, unused)."""
    cfg = config_from_flat(TFR.config_cls, resolve_config(TFR, ModelSpec("tfr_net"), "mosi"))
    with torch.device("meta"):
        model = TFR(cfg, _mosi_spec())  # text as 768-d features: no encoder inside
    assert _count(model) == MMSA_TFR_TOTAL - MMSA_TFR_BERT
    parts = {name: _count(getattr(model, name)) for name in ("proj", "intra", "cross", "temporal", "generator")}
    parts["fusion_and_classifier"] = sum(_count(getattr(model, n)) for n in ("fusion", "cls_norm", "cls_hidden",
                                                                              "cls_out"))
    assert parts == MMSA_TFR_PARTS
    assert model.temporal["v"].layers[0].attention.num_heads == 25  # gcd(500, num_temporal_head 25)
    assert model.inference_parameter_count() == _count(model) - parts["temporal"] - parts["generator"]


def test_tfr_presets_follow_mmsa_and_name_the_encoder():
    mosi = resolve_config(TFR, ModelSpec("tfr_net"), "mosi")
    assert mosi["text.encoder"] == "bert-base-uncased" and mosi["text.frozen"] is False
    assert (mosi["train.lr"], mosi["train.text_lr"], mosi["train.batch_size"], mosi["train.grad_accum"]) == \
        (1e-3, 2e-6, 24, 4)
    assert (mosi["train.patience"], mosi["train.scheduler"], mosi["train.scheduler_patience"]) == (6, "plateau", 5)
    assert (mosi["model.rec_weight_t"], mosi["model.rec_weight_a"], mosi["model.rec_weight_v"]) == (5.0, 2.0, 20.0)
    sims = resolve_config(TFR, ModelSpec("tfr_net"), "sims")
    assert sims["text.encoder"] == "bert-base-chinese" and sims["model.cross_layers"] == 2
    assert sims["train.scheduler_patience"] == 10 and sims["model.rec_weight_v"] == 1e-4


def test_reconstruction_loss_only_on_dropped_positions():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 6, 4, generator=g, requires_grad=True)
    target = torch.randn(3, 6, 4, generator=g)
    dropped = torch.zeros(3, 6, dtype=torch.bool)
    dropped[0, 1] = dropped[1, 4] = dropped[2, 0] = True
    loss = reconstruction_loss(pred, target, dropped, cmd_weight=5.0)
    loss.backward()
    assert loss > 0
    assert torch.equal(pred.grad[~dropped], torch.zeros_like(pred.grad[~dropped]))  # no gradient elsewhere
    assert pred.grad[dropped].abs().sum() > 0
    # other values at kept positions: the same loss; another value at a dropped position: another loss
    junk_pred, junk_target = pred.detach().clone(), target.clone()
    junk_pred[~dropped] = 100.0
    junk_target[~dropped] = -100.0
    torch.testing.assert_close(reconstruction_loss(junk_pred, junk_target, dropped, 5.0), loss.detach())
    moved = target.clone()
    moved[1, 4] += 1.0
    assert not torch.allclose(reconstruction_loss(pred.detach(), moved, dropped, 5.0), loss.detach())
    # the SmoothL1 part alone is the mean over the dropped elements
    expected = torch.nn.functional.smooth_l1_loss(pred.detach()[dropped], target[dropped], reduction="sum")
    torch.testing.assert_close(reconstruction_loss(pred.detach(), target, dropped, 0.0),
                               expected / (dropped.sum() * 4 + 1e-4))
    assert reconstruction_loss(pred.detach(), target, torch.zeros_like(dropped), 5.0) == 0


def test_tfr_model_reconstructs_only_what_was_dropped():
    """Through the model: the complete view's values at kept positions never enter the loss."""
    spec = make_input_spec(("t", "a", "v"))
    model = _tiny(TFR, spec).eval()
    batch = random_batch(spec, batch_size=5, seed=3)
    drop = _drops(batch)
    complete = {m: batch.modality(m)[0] for m in ("t", "a", "v")}
    masked = _with_missing(batch, drop, complete)
    with torch.no_grad():
        enc = model.encode(*model.inputs(masked))
        base = model.reconstruction_losses(enc, masked)
        assert set(base) == {"rec_t", "rec_a", "rec_v"} and all(v > 0 for v in base.values())
        junk = {m: torch.where(drop[m].unsqueeze(-1), complete[m], torch.full_like(complete[m], 77.0))
                for m in complete}  # kept positions of the complete view replaced by junk
        same = model.reconstruction_losses(enc, dataclasses.replace(masked, missing=MissingView(drop, junk)))
        for k in base:
            torch.testing.assert_close(same[k], base[k])
        moved = {m: complete[m].clone() for m in complete}
        moved["a"][0, 0] += 3.0  # a dropped audio frame
        other = model.reconstruction_losses(enc, dataclasses.replace(masked, missing=MissingView(drop, moved)))
        assert not torch.allclose(other["rec_a"], base["rec_a"])
        torch.testing.assert_close(other["rec_v"], base["rec_v"])


def test_tfr_reconstruction_attends_within_each_sample():
    """The channel transformer never mixes samples (the reference's transpose attends across the batch)."""
    spec = make_input_spec(("t", "a", "v"))
    model = _tiny(TFR, spec).eval()
    batch = random_batch(spec, batch_size=4, seed=5)
    with torch.no_grad():
        enc = model.encode(*model.inputs(batch))
        out = model.reconstruct("a", enc.joined["a"], enc.masks["a"])
        other = enc.joined["a"].clone()
        other[1:] = torch.randn_like(other[1:])
        out2 = model.reconstruct("a", other, enc.masks["a"])
    torch.testing.assert_close(out[0], out2[0])
    assert not torch.allclose(out[1], out2[1])


def test_tfr_training_step_adds_reconstruction_from_the_second_epoch():
    spec = make_input_spec(("t", "a", "v"))
    model = _tiny(TFR, spec, self_drop_rate=0.0)
    batch = random_batch(spec, batch_size=6, seed=2)
    masked = _with_missing(batch, _drops(batch), {m: batch.modality(m)[0] for m in ("t", "a", "v")})
    ctx = training_context(model, spec, n_train=6, steps_per_epoch=1, epochs=2)
    model.train()
    ctx.epoch = 0
    assert set(model.training_step(masked, ctx)) == {"task", "total"}  # MMSA: gen_loss from epoch 2
    ctx.epoch = 1
    logged = model.training_step(masked, ctx)
    assert {"rec_t", "rec_a", "rec_v"} <= set(logged)
    assert logged["total"] == pytest.approx(logged["task"] + logged["rec_t"] + logged["rec_a"] + logged["rec_v"],
                                            rel=1e-5)
    # no protocol masks and self_drop_rate 0: nothing to reconstruct, as in the reference at rate 0
    assert set(model.training_step(batch, ctx)) == {"task", "total"}


def test_tfr_self_drawn_view_follows_the_protocol_semantics():
    spec = make_input_spec(("t", "a", "v"), text_kind="tokens")
    model = _tiny(TFR, spec, self_drop_rate=0.5)
    batch = random_batch(spec, batch_size=6, seed=4)
    torch.manual_seed(0)
    view = model.self_dropped(batch)
    ids, mask = batch.modality("t")
    dropped_ids, _ = view.modality("t")
    drop = view.drop_mask("t")
    assert drop.any() and not (drop & ~mask).any()  # padding untouched
    lengths = mask.sum(dim=1)
    rows = torch.arange(ids.shape[0])
    assert not drop[rows, 0].any() and not drop[rows, lengths - 1].any()  # [CLS] and [SEP] kept
    assert (dropped_ids[drop] == spec.special_ids["unk"]).all()
    assert torch.equal(dropped_ids[~drop], ids[~drop])
    assert (view.audio[view.drop_mask("a")] == 0).all()
    complete = view.complete_view()
    assert torch.equal(complete.modality("t")[0], ids) and torch.equal(complete.audio, batch.audio)


def test_tfr_param_groups_split_bert_decay_as_mmsa():
    spec = make_input_spec(("t", "a", "v"), text_kind="encoded")
    model = _tiny(TFR, spec)
    cfg = {"train.lr": 1e-3, "train.text_lr": 2e-6, "train.weight_decay": 1e-3, "train.text_weight_decay": 1e-4}
    groups = model.param_groups(cfg)["main"].groups
    by_name = {g.get("name", "other"): g for g in groups}
    assert by_name["other"]["weight_decay"] == 1e-3 and "lr" not in by_name["other"]
    assert by_name["text_encoder"]["lr"] == 2e-6 and by_name["text_encoder"]["weight_decay"] == 1e-4
    assert by_name["text_encoder_no_decay"]["weight_decay"] == 0.0
    encoder = model.text_input.encoder
    no_decay = {id(p) for p in by_name["text_encoder_no_decay"]["params"]}
    for n, p in encoder.named_parameters():
        assert (id(p) in no_decay) == (n.endswith("bias") or "LayerNorm" in n), n
    assert sum(len(g["params"]) for g in groups) == len([p for p in model.parameters() if p.requires_grad])


# -- ALMT --------------------------------------------------------------------------------------

ALMT = MODELS.get("almt")


def _official_almt_params(dims: dict[str, int], lens: dict[str, int], fusion_layers: int) -> int:
    """Haoyu-ha/ALMT's models/almt.py at configs/mosi.yaml widths, BERT left out, counted by hand from
    almt_layer.py: Attention = 3 LayerNorms + bias-free q/k/v (dim x heads*dim_head) + Linear out;
    FeedForward = LayerNorm + Linear(dim, mlp) + Linear(mlp, dim)."""
    d, n, inner, mlp = 128, 8, 8 * 64, 128
    layer = (3 * 2 * d + 3 * d * inner + inner * d + d) + (2 * d + d * mlp + mlp + mlp * d + d)
    proj = sum(dims[m] * d + d + (lens[m] + n) * d + n * d + layer for m in ("t", "a", "v"))  # Linear + Transformer
    text_encoder = n * d + 2 * layer  # AHL_depth - 1 = 2 layers
    ahl = 3 * (4 * 2 * d + 5 * d * 128 + 128 * d + d)  # 4 LayerNorms, q, k/v per source, to_out
    fusion = 2 * (n + 1) * d + d + fusion_layers * layer  # two positional embeddings, the token
    return proj + text_encoder + n * d + ahl + fusion + d + 1  # + h_hyper, + regression Linear


def test_almt_parameter_count_at_mosi_shapes_equals_the_official_architecture():
    cfg = config_from_flat(ALMT.config_cls, resolve_config(ALMT, ModelSpec("almt"), "mosi"))
    with torch.device("meta"):
        model = ALMT(cfg, _mosi_spec())  # text as 768-d features: no encoder inside
    expected = _official_almt_params({"t": 768, "a": 5, "v": 20}, {"t": 50, "a": 375, "v": 500}, 2)
    assert _count(model) == expected == 2_603_649


def test_almt_variants_presets_and_training_defaults():
    assert resolve_config(ALMT, ModelSpec("almt", "frozen"), "mosi")["text.frozen"] is True
    assert resolve_config(ALMT, ModelSpec("almt", "finetune"), "mosi")["text.frozen"] is False
    mosi = resolve_config(ALMT, ModelSpec("almt"), "mosi")
    assert mosi["text.encoder"] == "bert-base-uncased" and mosi["model.fusion_layers"] == 2
    assert (mosi["train.optimizer"], mosi["train.lr"], mosi["train.text_lr"], mosi["train.weight_decay"]) == \
        ("adamw", 1e-4, 1e-4, 1e-4)
    assert (mosi["train.batch_size"], mosi["train.epochs"], mosi["train.scheduler"]) == (64, 200, "linear")
    assert resolve_config(ALMT, ModelSpec("almt"), "mosei")["model.fusion_layers"] == 4
    assert resolve_config(ALMT, ModelSpec("almt"), "sims")["text.encoder"] == "bert-base-chinese"


def test_almt_forward_is_predict_of_the_unimodal_tokens():
    """The extension point for S2LIF's "ALMT + Mask": a transform of `unimodal`'s tokens before `predict`."""
    spec = make_input_spec(("t", "a", "v"))
    model = _tiny(ALMT, spec).eval()
    batch = random_batch(spec, batch_size=5, seed=1)
    with torch.no_grad():
        tokens = model.unimodal(batch)
        assert {m: tuple(t.shape) for m, t in tokens.items()} == {m: (5, 4, 16) for m in ("t", "a", "v")}
        pred, _ = model.predict(tokens)
        torch.testing.assert_close(model(batch).pred, pred)
        masked = dict(tokens, v=torch.zeros_like(tokens["v"]))  # a mask that removes the vision tokens
        assert not torch.allclose(model.predict(masked)[0], pred)


def test_almt_hyper_modality_attends_to_the_present_non_verbal_modalities():
    """S2LIF's rows are text + vision, 3 classes: AHL attends to vision only; text is required."""
    spec = make_input_spec(("t", "v"), task="classification")
    model = _tiny(ALMT, spec).eval()
    assert all(set(layer.to_k) == {"v"} for layer in model.hyper)
    with torch.no_grad():
        assert tuple(model(random_batch(spec, batch_size=3, seed=2)).pred.shape) == (3, 3)
    assert "needs modalities t" in ALMT.check_inputs(make_input_spec(("a", "v")))


def test_almt_regression_trains_on_mse_as_the_official_code():
    spec = make_input_spec(("t", "a", "v"))
    batch = random_batch(spec, batch_size=6, seed=3)
    for loss_name, fn in (("mse", torch.nn.functional.mse_loss), ("l1", torch.nn.functional.l1_loss)):
        model = _tiny(ALMT, spec, regression_loss=loss_name)
        ctx = training_context(model, spec, n_train=6, steps_per_epoch=1, epochs=1)
        model.train()  # dropout 0: train and eval forward passes agree
        with torch.no_grad():
            expected = float(fn(model(batch).pred, batch.y))
        assert model.training_step(batch, ctx)["task"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="regression_loss"):
        _tiny(ALMT, spec, regression_loss="huber")
