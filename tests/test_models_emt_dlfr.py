"""EMT-DLFR (`emt_dlfr`): each switch changes the computation as the paper says, and the paper's
complexity numbers (Table 9's #Params, Table 8's MAC ordering) come out of the model as built."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
from pathlib import Path

import pytest
import torch

from msabench.api import MODELS, Batch, MissingView, config_from_flat
from msabench.api.conformance import make_input_spec, random_batch, training_context
from msabench.core.config import ModelSpec, parse_model_spec, resolve_config
from msabench.models.emt_dlfr import (
    AttentionPool,
    EMTDLFRConfig,
    EMTFusion,
    PromotionBlock,
    masked_smooth_l1,
    negative_cosine,
)
from msabench.models.layers.transformer import real_positions, sinusoidal_embedding

pytestmark = pytest.mark.time_limit(60)

CLS = MODELS.get("emt_dlfr")


def _complexity():
    path = Path(__file__).resolve().parents[1] / "perf" / "emt_dlfr_complexity.py"
    spec = importlib.util.spec_from_file_location("emt_dlfr_complexity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny(**changes) -> EMTDLFRConfig:
    return dataclasses.replace(CLS.tiny(), **changes)


def _model(spec, seed=0, **changes):
    torch.manual_seed(seed)
    return CLS(_tiny(**changes), spec)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _with_missing(batch: Batch, spec, rate: float = 0.5, seed: int = 0) -> Batch:
    """The batch as `missing-rate` hands it over: fields masked, complete inputs and drop masks beside."""
    g = torch.Generator().manual_seed(seed)
    drops, complete, values = {}, {}, {}
    for m, field in (("t", "text_feats"), ("a", "audio"), ("v", "vision")):
        x, real = batch.modality(m)
        drops[m] = (torch.rand(real.shape, generator=g) < rate) & real
        complete[m] = x
        values[field] = x * (~drops[m]).unsqueeze(-1)
    return dataclasses.replace(batch, missing=MissingView(drop=drops, complete=complete), **values)


def _poisoned(batch: Batch) -> Batch:
    """The same masked view, with a complete view of NaNs."""
    nan = {m: torch.full_like(x, float("nan")) for m, x in batch.missing.complete.items()}
    return dataclasses.replace(batch, missing=MissingView(drop=batch.missing.drop, complete=nan))


# -- registration: template rows, presets ----------------------------------------------------------

def test_every_emt_template_row_names_a_registered_variant():
    from msabench.protocols.templates import TEMPLATES

    specs = {row.model for name in TEMPLATES.names() if name.startswith("emt-table") for row in TEMPLATES.get(name).rows
             if row.model and row.model.startswith("emt_dlfr")}
    assert {"emt_dlfr", "emt_dlfr@emt", "emt_dlfr@share-none", "emt_dlfr@share-all"} <= specs
    for text in specs:
        spec = parse_model_spec(text)
        cfg = config_from_flat(CLS.config_cls, resolve_config(CLS, spec, "mosi"))
        if spec.variant == "emt":
            assert not cfg.dlfr
    # the default is Table 9's all-shared row (the reference config; its AUILC is Table 6's EMT-DLFR row)
    assert resolve_config(CLS, ModelSpec("emt_dlfr"), "mosi") == resolve_config(CLS, ModelSpec("emt_dlfr", "share-all"),
                                                                                 "mosi")


@pytest.mark.parametrize("family,batch,lr,text_lr,d,layers,attn,ffn,lam", [
    ("mosi", 32, 1e-3, 5e-5, 128, 3, 0.3, 0.1, 1.0),
    ("mosei", 16, 1e-4, 2e-5, 128, 2, 0.0, 0.0, 1.0),
    ("sims", 32, 1e-3, 2e-5, 32, 4, 0.0, 0.0, 0.5),
])
def test_presets_are_table3(family, batch, lr, text_lr, d, layers, attn, ffn, lam):
    flat = resolve_config(CLS, ModelSpec("emt_dlfr"), family)
    assert (flat["train.batch_size"], flat["train.lr"], flat["train.text_lr"]) == (batch, lr, text_lr)
    assert flat["train.optimizer"] == "adam" and flat["train.patience"] == 8 and flat["train.grad_accum"] == 4
    assert (flat["model.d_model"], flat["model.layers"], flat["model.heads"], flat["model.ffn_expansion"]) == (
        d, layers, 4, 4)
    assert (flat["model.emb_dropout"], flat["model.attn_dropout"], flat["model.ffn_dropout"]) == (0.0, attn, ffn)
    assert flat["model.recon_weight"] == flat["model.attraction_weight"] == lam
    assert flat["text.encoder"] == ("bert-base-chinese" if family == "sims" else "bert-base-uncased")
    assert flat["text.frozen"] is False


# -- Table 9 and Table 8 -----------------------------------------------------------------------------

def test_table9_parameter_counts_with_bert_base():
    """Each sharing combination's inference-time #Params, bert-base-uncased config on the meta device.

    The harness's BERT has no pooler (unused by EMT); the paper's count includes it (reference code:
    BertModel.from_pretrained). With it, every row of Table 9 is reproduced to its printed 0.1M."""
    perf = _complexity()
    for variant, paper in perf.PAPER_PARAMS.items():
        ours = perf.inference_params(variant)
        assert round((ours + perf.BERT_POOLER) / 1e6, 1) == paper, (variant, ours)


def test_table8_fusion_macs_order_and_scaling():
    """OAGL has the fewest MACs, OALL the most (Table 8); OAGL scales linearly in M, OOLL/OALL quadratically."""
    perf = _complexity()
    macs = {f: perf.fusion_macs(f)["total"] for f in ("ooll", "oall", "oagl")}
    assert macs["oagl"] < macs["ooll"] < macs["oall"]
    assert 1.8 < macs["ooll"] / macs["oagl"] < 2.6  # paper: 3.1 / 1.5 = 2.1
    assert 5.0 < macs["oall"] / macs["oagl"] < 7.0  # paper: 8.3 / 1.5 = 5.5
    growth = {f: perf.fusion_macs(f, (60, 60, 60))["total"] / perf.fusion_macs(f, (60, 60))["total"]
              for f in ("ooll", "oall", "oagl")}
    assert growth["oagl"] < 1.6  # 3/2 modalities: linear
    assert growth["oall"] > 2.0 and growth["ooll"] > 2.0  # quadratic


# -- hierarchical parameter sharing -------------------------------------------------------------------

@pytest.mark.parametrize("fusion", ["oagl", "oall", "ooll"])
def test_sharing_removes_exactly_the_shared_blocks(fusion):
    """Each sharing level divides the number of distinct MPU directions (and layer sharing the pools)."""
    base = _tiny(d_model=8, layers=3, fusion=fusion)
    block = _count(PromotionBlock(base))
    n_units = 3  # three modalities: three MPUs per layer (OOLL: three pairs)
    for mpu, modality, layer in itertools.product((False, True), repeat=3):
        cfg = dataclasses.replace(base, share_mpu=mpu, share_modality=modality, share_layer=layer)
        fusion_module = EMTFusion(cfg, 3)
        pool = _count(fusion_module.pools[0])
        directions = (1 if mpu else 2) * (1 if modality else n_units) * (1 if layer else 3)
        assert _count(fusion_module) == directions * block + (1 if layer else 3) * pool
        units = fusion_module.units
        assert (units[0][0][0] is units[0][0][1]) == mpu
        assert (units[0][0][0] is units[0][1][0]) == modality
        assert (units[0][0][0] is units[1][0][0]) == layer
        if not (mpu or modality or layer):  # unshared copies start equal (the reference code deep-copies)
            torch.testing.assert_close(units[0][0][0].ffn.inner.weight, units[2][2][1].ffn.inner.weight)


def _variant(name: str) -> dict:
    return {k[len("model."):]: v for k, v in CLS.VARIANTS[name].items()}


def test_sharing_variants_reach_the_model():
    spec = make_input_spec()
    counts = {v: _count(_model(spec, layers=3, **_variant(v)).fusion) for v in ("share-none", "share-mpu", "share-all")}
    assert counts["share-none"] > counts["share-mpu"] > counts["share-all"]


# -- fusion strategies, serial variants, pooling -------------------------------------------------------

def _fusion_inputs(seed=0, lengths=(5, 7, 6), d=8):
    g = torch.Generator().manual_seed(seed)
    context = torch.randn(2, 3, d, generator=g)
    seqs = [torch.randn(2, t, d, generator=g) for t in lengths]
    masks = [torch.ones(2, t, dtype=torch.bool) for t in lengths]
    masks[1][1, 4:] = False
    return context, seqs, masks


@pytest.mark.parametrize("fusion", ["oagl", "oall", "ooll"])
def test_local_local_vs_global_local_interactions(fusion):
    """One layer: in OOLL/OALL the promoted text reads the audio sequence itself (local-local); in OAGL
    it reads only the global context G^[0], while G^[1] reads the audio sequence (global-local)."""
    torch.manual_seed(0)
    module = EMTFusion(_tiny(d_model=8, layers=1, fusion=fusion), 3).eval()
    context, seqs, masks = _fusion_inputs()
    g1, out1 = module(context, [s.clone() for s in seqs], masks)
    seqs[1] = seqs[1] + torch.randn_like(seqs[1])  # another audio sequence, same G^[0]
    g2, out2 = module(context, [s.clone() for s in seqs], masks)
    text_changed = not torch.allclose(out1[0], out2[0])
    assert text_changed == (fusion != "oagl")
    if fusion == "oagl":
        assert g1.shape == (2, 3 * 8) and not torch.allclose(g1, g2)


@pytest.mark.parametrize("serial", [False, True])
def test_serial_variant_feeds_the_promoted_sequence_to_the_context_half(serial):
    torch.manual_seed(0)
    cfg = _tiny(d_model=8, layers=1, fusion="oagl", pooling="average", serial=serial, share_modality=False)
    module = EMTFusion(cfg, 3).eval()
    context, seqs, masks = _fusion_inputs()
    g, _ = module(context, [s.clone() for s in seqs], masks)
    with torch.no_grad():
        candidates = []
        for k, (to_local, to_context) in enumerate(module.units[0]):
            h = seqs[k] + sinusoidal_embedding(real_positions(masks[k]), 8)
            promoted = to_local(h, masks[k], context, None)
            candidates.append(to_context(context, None, promoted if serial else h, masks[k]).flatten(1))
    torch.testing.assert_close(g, torch.stack(candidates, 1).mean(1))


def test_attention_pooling_is_a_softmax_weighted_sum_and_mlp_pooling_is_larger():
    torch.manual_seed(0)
    pool = AttentionPool(6)
    candidates = torch.randn(4, 3, 6)
    weights = pool.score(candidates).softmax(dim=1)  # (4, 3, 1), eq. 9
    torch.testing.assert_close(pool(candidates), (weights * candidates).sum(1))
    sizes = {p: _count(EMTFusion(_tiny(d_model=8, layers=1, pooling=p), 3).pools) for p in ("attention", "average",
                                                                                          "mlp")}
    assert sizes["average"] == 0 and sizes["mlp"] > sizes["attention"] > 0  # 5.2.3: MLP pooling has more


def test_serial_ooll_is_refused():
    with pytest.raises(ValueError, match="serial"):
        EMTFusion(_tiny(fusion="ooll", serial=True), 3)


def test_geglu_ffn_is_wider_than_the_vanilla_ffn():
    d, e = 8, 2
    geglu, gelu = PromotionBlock(_tiny(d_model=d, ffn="geglu")), PromotionBlock(_tiny(d_model=d, ffn="gelu"))
    assert _count(geglu) - _count(gelu) == d * (d * e) + d * e  # the gate half of the first layer


# -- encoders --------------------------------------------------------------------------------------------

def test_text_local_sequence_excludes_cls_and_sep():
    spec = make_input_spec(text_kind="tokens")
    model = _model(spec).eval()
    batch = random_batch(spec, batch_size=6, seed=3)
    with torch.no_grad():
        enc = model._encode(batch)
    lengths = batch.text_mask.long().sum(1)
    assert torch.equal(enc.local_masks["t"].long().sum(1), (lengths - 2).clamp_min(0))
    assert enc.local["t"].shape[1] == batch.text_mask.shape[1] - 1


# -- DLFR ------------------------------------------------------------------------------------------------

def test_complete_view_is_training_only():
    """Evaluation reads the masked view alone: a poisoned complete view changes nothing at test time."""
    spec = make_input_spec()
    model = _model(spec).eval()
    batch = _with_missing(random_batch(spec, batch_size=6, seed=1), spec)
    poisoned = _poisoned(batch)
    bare = dataclasses.replace(batch, missing=None)
    with torch.no_grad():
        torch.testing.assert_close(model(poisoned).pred, model(bare).pred)


@pytest.mark.parametrize("variant,keys,reads_complete", [
    (None, {"task", "recon", "attraction", "total"}, True),
    ("emt", {"task", "total"}, False),
    ("llfr", {"task", "recon", "total"}, True),  # lambda2 = 0: the text target still needs the complete BERT output
    ("hlfr", {"task", "attraction", "total"}, True),
])
def test_loss_terms_follow_eq16_and_the_switches(variant, keys, reads_complete):
    spec = make_input_spec()
    changes = _variant(variant) if variant else {}
    model = _model(spec, **changes)
    batch = _with_missing(random_batch(spec, batch_size=6, seed=2), spec)
    ctx = training_context(model, spec, lr=1e-3)
    model.train()
    logged = model.training_step(batch, ctx)
    assert set(logged) == keys and all(math.isfinite(v) for v in logged.values())
    # with a poisoned complete view the loss turns non-finite exactly when the complete view is read
    model = _model(spec, **changes)
    poisoned = _poisoned(batch)
    logged = model.training_step(poisoned, training_context(model, spec, lr=1e-3))
    assert math.isfinite(logged["total"]) != reads_complete


def test_complete_setting_trains_on_the_task_loss_alone_unless_self_drop():
    spec = make_input_spec()
    batch = random_batch(spec, batch_size=6, seed=4)  # no missing view: `standard`
    for rate, keys in ((0.0, {"task", "total"}), (0.4, {"task", "recon", "attraction", "total"})):
        model = _model(spec, self_drop_rate=rate)
        model.train()
        assert set(model.training_step(batch, training_context(model, spec))) == keys


def test_self_drawn_masks_follow_the_protocol_semantics():
    spec = make_input_spec(text_kind="tokens")
    model = _model(spec, self_drop_rate=0.6)
    batch = random_batch(spec, batch_size=8, seed=5)
    torch.manual_seed(1)
    view = model._restoration_view(batch)
    ids, real = view.missing.complete["t"], batch.text_mask
    drop_t = view.drop_mask("t")
    lengths = real.long().sum(1)
    rows = torch.arange(8)
    assert not (drop_t & ~real).any() and not drop_t[:, 0].any() and not drop_t[rows, lengths - 1].any()
    assert drop_t.any()
    masked_ids, _ = view.modality("t")
    assert (masked_ids[drop_t] == spec.special_ids["unk"]).all()
    assert torch.equal(masked_ids[~drop_t], ids[~drop_t])
    audio, _ = view.modality("a")
    assert (audio[view.drop_mask("a")] == 0).all() and view.drop_mask("a").any()


def test_reconstruction_reads_only_the_dropped_positions():
    spec = make_input_spec()
    model = _model(spec).eval()
    batch = _with_missing(random_batch(spec, batch_size=6, seed=6), spec)
    with torch.no_grad():
        enc = model._encode(batch)
        base = model._reconstruction(batch, enc, None)

        def shifted(where):
            complete = dict(batch.missing.complete)
            complete["a"] = complete["a"] + 5.0 * where.unsqueeze(-1)
            view = dataclasses.replace(batch, missing=MissingView(drop=batch.missing.drop, complete=complete))
            return model._reconstruction(view, enc, None)

        dropped = batch.drop_mask("a")
        kept = batch.audio_mask & ~dropped
        assert dropped.any() and kept.any()
        torch.testing.assert_close(shifted(kept), base)
        assert not torch.allclose(shifted(dropped), base)


def test_smooth_l1_is_averaged_over_dropped_elements():
    pred, target = torch.zeros(1, 3, 2), torch.tensor([[[0.5, 0.5], [3.0, 3.0], [9.0, 9.0]]])
    dropped = torch.tensor([[True, True, False]])
    expected = (0.5 * 0.25 * 2 + 2.5 * 2) / 4  # eq. 12: 0.5 x^2 below 1, |x| - 0.5 above
    torch.testing.assert_close(masked_smooth_l1(pred, target, dropped), torch.tensor(expected), atol=1e-5, rtol=1e-5)


def test_simsiam_stops_the_gradient_of_the_target_and_cosine_has_no_heads():
    p, z = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    loss = negative_cosine(p, z)
    loss.backward()
    torch.testing.assert_close(loss, -torch.nn.functional.cosine_similarity(p, z, dim=-1).mean())
    assert z.grad is None and p.grad is not None
    spec = make_input_spec()
    simsiam, cosine = _model(spec), _model(spec, attraction="cosine")
    assert set(simsiam.projectors) == set(simsiam.predictors) == {"g", "t", "a", "v"}
    assert len(cosine.projectors) == len(cosine.predictors) == 0
    batch = _with_missing(random_batch(spec, batch_size=6, seed=7), spec)
    with torch.no_grad():  # 5.2.6: the plain negative cosine of each representation pair, summed
        enc_m, enc_c = cosine._encode(batch), cosine._encode(batch.complete_view())
        expected = -sum(torch.nn.functional.cosine_similarity(enc_m.utterance[k], enc_c.utterance[k], dim=-1).mean()
                        for k in ("g", "t", "a", "v"))
        torch.testing.assert_close(cosine._attraction(enc_m, enc_c), expected)


def test_inference_count_leaves_out_the_dlfr_networks():
    spec = make_input_spec()
    model, emt = _model(spec), _model(spec, dlfr=False)
    training_only = sum(_count(n) for n in (model.decoders, model.projectors, model.predictors))
    assert training_only > 0
    assert model.inference_parameter_count() == _count(model) - training_only == emt.inference_parameter_count()
    assert emt.inference_parameter_count() == _count(emt)
