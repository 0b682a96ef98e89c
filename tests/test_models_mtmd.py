"""`mtmd` (Multi-Task Momentum Distillation): the label rule, eqs. 1-18, one test per switch, queues."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from msabench.api import MODELS, config_from_flat, sentiment_classes
from msabench.api.conformance import make_input_spec, random_batch, run_epochs, training_context
from msabench.core.config import ModelSpec, parse_model_spec, resolve_config
from msabench.data.labels import to_classes

MTMD = MODELS.get("mtmd")
SPEC = make_input_spec(("t", "a", "v"))
ETA = MTMD.config_cls().momentum

pytestmark = pytest.mark.time_limit(60)


def _model(spec=SPEC, seed=0, **kw):
    torch.manual_seed(seed)
    return MTMD(dataclasses.replace(MTMD.tiny(), **kw), spec)


def _perturb(model, seed=1):
    """Move the online models away from their momentum copies, and the factors away from 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.subtasks.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        if model.cfg.fusion_factors:
            model.fusion_factors.copy_(torch.tensor([1.5, 0.5, 0.8])[: len(model.modalities)])
    return model


def _terms(model, batch):
    """The loss terms of eq. 18 in eval mode (no dropout: the test can recompute them)."""
    model.eval()
    with torch.no_grad():
        terms, stash = model.training_losses(batch)
        enc = model.encode(batch)
        momentum = {m: model.momentum_models[m](batch) for m in model.momentum_models}
    return terms, stash, enc, momentum


def _train(model, batches, epochs=1, spec=SPEC):
    ctx = training_context(model, spec, lr=1e-2, n_train=sum(len(b) for b in batches),
                           steps_per_epoch=len(batches), epochs=epochs)
    run_epochs(model, ctx, batches, epochs)
    return ctx


def _soft_ce(student, teacher):
    return -(F.softmax(teacher, -1) * F.log_softmax(student, -1)).sum(-1).mean()


# -- the label rule ---------------------------------------------------------------------------------

def test_sentiment_classes_is_the_harness_rule_on_tensors():
    scores = torch.tensor([-3.0, -0.6, -0.5, -0.2, 0.0, 1e-6, 0.4, 0.5, 0.5001, 2.5])
    for rule in ("sign", "round"):
        got = sentiment_classes(scores, rule)
        assert got.dtype == torch.long
        assert got.tolist() == to_classes(scores.numpy(), rule).tolist()
    assert sentiment_classes(scores, "round").tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 2, 2]


@pytest.mark.parametrize("rule,expected", [("sign", [2, 0, 1, 2, 0, 2]), ("round", [1, 1, 1, 2, 0, 1])])
def test_class_targets_follow_the_runs_label_rule(rule, expected):
    spec = make_input_spec(("t", "a", "v"), label_rule=rule)
    batch = random_batch(spec, batch_size=6, seed=3)
    batch.y = torch.tensor([0.4, -0.4, 0.0, 1.2, -2.0, 0.5])
    _, stash, _, _ = _terms(_model(spec), batch)
    assert stash["classes"].tolist() == expected


# -- presets, variants, structure --------------------------------------------------------------------

def test_variants_are_the_template_rows():
    from msabench.protocols.templates import TEMPLATES

    named = {parse_model_spec(row.model).variant for table in ("mtmd-table1", "mtmd-table2", "mtmd-table3")
             for row in TEMPLATES.get(table).rows if row.model and row.model.startswith("mtmd")}
    named.discard(None)
    assert named == set(MTMD.VARIANTS)
    assert len(named) == 14
    for variant, keys in MTMD.VARIANTS.items():
        flat = resolve_config(MTMD, ModelSpec("mtmd", variant), "mosi")
        assert all(k.startswith("model.") and flat[k] == v for k, v in keys.items())
        # every variant differs from the full model in exactly its own keys
        full = resolve_config(MTMD, ModelSpec("mtmd"), "mosi")
        assert {k for k in flat if flat[k] != full[k]} == set(keys)


def test_presets_follow_section_vb():
    for family, batch, queue in (("mosi", 64, 1024), ("mosei", 128, 8192)):
        flat = resolve_config(MTMD, ModelSpec("mtmd"), family)
        assert (flat["train.batch_size"], flat["model.queue_size"]) == (batch, queue)
        assert (flat["text.encoder"], flat["text.frozen"]) == ("bert-base-uncased", False)
        assert (flat["train.lr"], flat["train.unimodal_lr"], flat["train.text_lr"]) == (1e-3, 5e-3, 5e-5)
        assert flat["train.optimizer"] == "adam"
        cfg = config_from_flat(MTMD.config_cls, flat)
        assert (cfg.momentum, cfg.dropout, cfg.audio_hidden, cfg.vision_hidden) == (0.995, 0.1, 32, 64)
        assert (cfg.transformer_layers, cfg.transformer_heads) == (3, 4)


def test_audio_vision_encoders_are_slstm_then_a_transformer_at_paper_widths():
    spec = make_input_spec(("t", "a", "v"), dims={"t": 768, "a": 5, "v": 20}, max_lens={"t": 50, "a": 375, "v": 500})
    cfg = config_from_flat(MTMD.config_cls, resolve_config(MTMD, ModelSpec("mtmd"), "mosi"))
    with torch.device("meta"):
        model = MTMD(cfg, spec)
    for m, width in (("a", 32), ("v", 64)):
        enc = model.subtasks[m].encoder
        assert (enc.lstm.input_size, enc.lstm.hidden_size, enc.lstm.num_layers) == (spec.dims[m], width, 1)
        assert not enc.lstm.bidirectional
        assert len(enc.transformer.layers) == 3 and enc.transformer.layers[0].attention.num_heads == 4
        assert model.subtasks[m].project[0].in_features == width
    assert model.subtasks["t"].project[0].in_features == 768
    assert model.fusion[0].in_features == 3 * cfg.feature_dim
    assert set(model.momentum_models) == {"a", "v"}


def test_text_is_the_cls_position_and_sequences_their_first_step():
    model = _model().eval()
    batch = random_batch(SPEC, batch_size=4, seed=2)
    base = model(batch).features
    later = dataclasses.replace(batch)
    later.text_feats = batch.text_feats.clone()
    later.text_feats[:, 1:] += 5.0 * batch.text_mask[:, 1:, None]
    with torch.no_grad():
        assert torch.equal(model(later).features["t"], base["t"])  # eq. 1: [CLS] only
        first = dataclasses.replace(batch)
        first.text_feats = batch.text_feats.clone()
        first.text_feats[:, 0] += 5.0
        assert not torch.allclose(model(first).features["t"], base["t"])
        # eq. 2: the Transformer mixes every real step into the first one
        audio = dataclasses.replace(batch, audio=batch.audio + 3.0 * batch.audio_mask[..., None])
        assert not torch.allclose(model(audio).features["a"], base["a"])


def test_param_groups_follow_section_vb_learning_rates():
    model = _model()
    groups = model.param_groups({"train.lr": 1e-3, "train.unimodal_lr": 5e-3, "train.text_lr": 5e-5})["main"]
    unimodal = next(g for g in groups if g.get("name") == "unimodal")
    assert unimodal["lr"] == 5e-3
    ids = {id(p) for p in unimodal["params"]}
    assert ids == {id(p) for m in ("a", "v") for p in model.subtasks[m].parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in trainable)
    assert not any(p.requires_grad for p in model.momentum_models.parameters())


def test_a_fine_tuned_bert_trains_in_its_own_group_at_text_lr():
    encoded = _model(make_input_spec(("t", "a", "v"), text_kind="encoded"))
    groups = encoded.param_groups({"train.lr": 1e-3, "train.unimodal_lr": 5e-3, "train.text_lr": 5e-5})["main"]
    text = next(g for g in groups if g.get("name") == "text_encoder")
    assert text["lr"] == 5e-5
    assert {id(p) for p in text["params"]} == {id(p) for p in encoded.subtasks["t"].encoder.text.encoder.parameters()}
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(
        id(p) for p in encoded.parameters() if p.requires_grad)


def test_inference_count_leaves_out_training_only_networks():
    model = _model()
    heads = sum(p.numel() for s in model.subtasks.values() for h in (s.regress, s.classify) for p in h.parameters())
    training_only = (sum(p.numel() for p in model.momentum_models.parameters()) + heads
                     + sum(p.numel() for p in model.fusion_classify.parameters()) + 1)  # + tau
    assert model.inference_parameter_count() == sum(p.numel() for p in model.parameters()) - training_only


# -- eq. 6: momentum models ---------------------------------------------------------------------------

def test_momentum_models_and_factors_follow_eq6_after_each_step():
    model = _model()
    batch = random_batch(SPEC, batch_size=7, seed=4)
    before = {m: [p.detach().clone() for p in model.momentum_models[m].parameters()] for m in ("a", "v")}
    factors_before = model.momentum_fusion_factors.clone()
    ctx = training_context(model, SPEC, lr=1e-2, n_train=7, steps_per_epoch=1, epochs=1)
    model.train()
    model.training_step(batch, ctx)
    for m in ("a", "v"):
        for old, p_m, p in zip(before[m], model.momentum_models[m].parameters(), model.subtasks[m].parameters()):
            torch.testing.assert_close(p_m, ETA * old + (1 - ETA) * p.detach())
        assert any(not torch.equal(old, p_m) for old, p_m in zip(before[m], model.momentum_models[m].parameters()))
    torch.testing.assert_close(model.momentum_fusion_factors,
                               ETA * factors_before + (1 - ETA) * model.fusion_factors.detach())


# -- eqs. 7 and 10: response-based DMD (switches reg_distill, cls_distill, dmd_momentum) ----------------

@pytest.mark.parametrize("switches", [{}, {"reg_distill": False}, {"cls_distill": False}, {"dmd_momentum": False}])
def test_response_distillation_eq7_eq10(switches):
    model = _perturb(_model(**switches))
    batch = random_batch(SPEC, batch_size=8, seed=5)
    terms, _, enc, mom = _terms(model, batch)
    cfg = model.cfg
    alpha = cfg.alpha if cfg.dmd_momentum else 0.0
    uni = enc.unimodal
    reg = cls = 0.0
    for u in ("a", "v"):
        if cfg.reg_distill:
            reg += (1 - alpha) * (uni["t"].score - uni[u].score).abs().mean()
        if cfg.cls_distill:
            cls += (1 - alpha) * _soft_ce(uni[u].logits, uni["t"].logits)
        if cfg.dmd_momentum:
            reg += alpha * (mom[u].score - uni[u].score).abs().mean()
            cls += alpha * _soft_ce(uni[u].logits, mom[u].logits)
    torch.testing.assert_close(terms["reg"], torch.as_tensor(reg))
    torch.testing.assert_close(terms["cls"], torch.as_tensor(cls))
    assert (len(model.momentum_models) == 2) == cfg.dmd_momentum
    if not cfg.dmd_momentum:
        assert mom == {}


# -- eqs. 8-11: feature-based DMD (switches feat_distill, queue, negatives, dmd_momentum) --------------

def _reference_feat(model, enc, mom, classes, index):
    """Eqs. 8, 9, 11 with one loop per query (softmax over the keys; Y uniform over the positives)."""
    cfg = model.cfg
    alpha = cfg.alpha if mom else 0.0
    tau = float(model.temperature.detach())
    filled = model.queue_index >= 0 if model.uses_queue else None

    def keys(name, current):
        return torch.cat([current, getattr(model, f"queue_{name}")[filled]]) if model.uses_queue else current

    key_classes = torch.cat([classes, model.queue_class[filled]]) if model.uses_queue else classes
    key_index = torch.cat([index, model.queue_index[filled]]) if model.uses_queue else index
    t = F.normalize(enc.unimodal["t"].feature, dim=-1)
    total = 0.0
    for u in ("a", "v"):
        s = F.normalize(enc.unimodal[u].feature, dim=-1)
        k_u, k_t = keys(u, s), keys("t", t)
        shared, specific = 0.0, 0.0
        for i in range(len(classes)):
            pos = (key_index == index[i]) if cfg.negatives == "instance" else (key_classes == classes[i])
            y = pos.float() / pos.sum()
            log_v_t2u = F.log_softmax(t[i] @ k_u.T / tau, -1)
            log_v_u2t = F.log_softmax(s[i] @ k_t.T / tau, -1)
            shared += 0.5 * (-(y * log_v_t2u).sum() - (y * log_v_u2t).sum()) / len(classes)
            if mom:
                m = F.normalize(mom[u].feature, dim=-1)
                u_t2u = F.softmax(t[i] @ keys(f"momentum_{u}", m).T / tau, -1)
                u_u2t = F.softmax(m[i] @ k_t.T / tau, -1)
                kl = (u_t2u * (u_t2u.log() - log_v_t2u)).sum() + (u_u2t * (u_u2t.log() - log_v_u2t)).sum()
                specific += 0.5 * kl / len(classes)
        total += (1 - alpha) * shared * cfg.feat_distill + alpha * specific
    return torch.as_tensor(total)


@pytest.mark.parametrize("switches", [{}, {"feat_distill": False}, {"queue": False}, {"negatives": "instance"},
                                      {"dmd_momentum": False}])
def test_feature_distillation_eq8_to_eq11(switches):
    model = _model(**switches)
    seen = [random_batch(SPEC, batch_size=7, seed=10 + i) for i in range(3)]
    for i, b in enumerate(seen):
        b.index = torch.arange(7 * i, 7 * i + 7)  # training indices 0..20
    _train(model, seen)  # fills the queues
    if model.uses_queue:
        assert int((model.queue_index >= 0).sum()) == 21
    else:
        assert not hasattr(model, "queue_t")
    _perturb(model)
    batch = random_batch(SPEC, batch_size=8, seed=6)
    batch.index = torch.tensor([0, 1, 2, 3, 30, 31, 32, 33])  # the first four met before (instance positives)
    terms, stash, enc, mom = _terms(model, batch)
    torch.testing.assert_close(terms["feat"], _reference_feat(model, enc, mom, stash["classes"], stash["index"]),
                               rtol=1e-4, atol=1e-5)
    positives = model.key_positives(stash["classes"], stash["index"])
    assert positives.shape == (8, 8 + (21 if model.uses_queue else 0))
    if switches.get("negatives") == "instance":
        assert positives.sum(1).tolist() == [2, 2, 2, 2, 1, 1, 1, 1]  # itself, and its queued copy


def test_feature_distillation_needs_a_teacher_and_a_loss():
    assert not hasattr(_model(feat_distill=False, dmd_momentum=False), "temperature")
    assert not hasattr(_model(subtasks="av"), "temperature")


def test_temperature_is_learned_and_clamped():
    model = _model(temperature=0.011)
    before = model.temperature.item()
    _train(model, [random_batch(SPEC, batch_size=7, seed=20 + i) for i in range(3)])
    assert model.temperature.item() != before
    assert 0.01 <= model.temperature.item() <= 1.0


# -- eqs. 12-16: MFD (switches fusion_factors, fusion_momentum, hard_attention, fusion_distill) --------

@pytest.mark.parametrize("hard_attention", [True, False])
def test_fusion_distillation_eq14_to_eq16(hard_attention):
    model = _perturb(_model(hard_attention=hard_attention))
    batch = random_batch(SPEC, batch_size=8, seed=7)
    terms, stash, enc, _ = _terms(model, batch)
    y, f = batch.y, enc.fusion
    w_reg = torch.tanh((y - f.score).abs()) if hard_attention else torch.ones(8)
    w_cls = (stash["classes"] - f.logits.argmax(-1)).abs().float().mean() if hard_attention else 1.0
    expected = sum((w_reg * (f.score - enc.unimodal[u].score).abs()).mean()
                   + w_cls * _soft_ce(enc.unimodal[u].logits, f.logits) for u in ("a", "v"))
    torch.testing.assert_close(terms["fusion"], expected)


def test_no_fusion_distill_drops_eq16_only():
    terms, *_ = _terms(_perturb(_model(fusion_distill=False)), random_batch(SPEC, batch_size=8, seed=7))
    assert set(terms) == {"gt", "reg", "cls", "feat"}


def test_fusion_is_eq12_with_the_momentum_factors():
    model = _perturb(_model())
    batch = random_batch(SPEC, batch_size=5, seed=8)
    with torch.no_grad():
        model.momentum_fusion_factors.copy_(torch.tensor([1.2, 0.3, 0.7]))
        model.eval()
        enc = model.encode(batch)
        feats = [enc.unimodal[m].feature * w for m, w in zip("tav", (1.2, 0.3, 0.7))]
        torch.testing.assert_close(enc.fusion.feature, model.fusion(torch.cat(feats, -1)))
        model.train()  # training: the EMA's next value, so that the gradient reaches the learnable factors
        torch.testing.assert_close(model.current_fusion_factors(),
                                   ETA * torch.tensor([1.2, 0.3, 0.7]) + (1 - ETA) * model.fusion_factors)


def test_mfd_without_momentum_uses_the_learnable_factors():
    model = _perturb(_model(fusion_momentum=False)).eval()
    assert not hasattr(model, "momentum_fusion_factors")
    assert model.current_fusion_factors() is model.fusion_factors
    values = model.epoch_values()
    assert (values["fusion_factor_t"], values["fusion_factor_a"]) == (1.5, 0.5)


def test_no_fusion_factors_is_a_plain_concatenation():
    model = _perturb(_model(fusion_factors=False)).eval()
    assert not hasattr(model, "fusion_factors")
    batch = random_batch(SPEC, batch_size=5, seed=8)
    with torch.no_grad():
        enc = model.encode(batch)
        torch.testing.assert_close(enc.fusion.feature,
                                   model.fusion(torch.cat([enc.unimodal[m].feature for m in "tav"], -1)))
    assert not any(k.startswith("fusion_factor") for k in model.epoch_values())


# -- subtasks and No Distill ---------------------------------------------------------------------------

@pytest.mark.parametrize("subtasks,students", [("av", ("a", "v")), ("tv", ("v",)), ("ta", ("a",))])
def test_without_a_subtask_the_modality_is_gone(subtasks, students):
    model = _perturb(_model(subtasks=subtasks))
    assert model.modalities == tuple(subtasks) and model.students == students
    assert set(model.subtasks) == set(subtasks) and set(model.momentum_models) == set(students)
    assert model.fusion[0].in_features == len(subtasks) * model.cfg.feature_dim
    terms, *_ = _terms(model, random_batch(SPEC, batch_size=8, seed=9))
    expected = {"gt", "reg", "cls", "fusion"} | ({"feat"} if "t" in subtasks else set())
    assert set(terms) == expected
    _train(model, [random_batch(SPEC, batch_size=7, seed=i) for i in range(2)])


def test_no_t_subtask_keeps_only_the_momentum_terms_of_eq10():
    model = _perturb(_model(subtasks="av"))
    terms, _, enc, mom = _terms(model, random_batch(SPEC, batch_size=8, seed=9))
    alpha = model.cfg.alpha
    reg = sum(alpha * (mom[u].score - enc.unimodal[u].score).abs().mean() for u in "av")
    torch.testing.assert_close(terms["reg"], reg)


def test_no_distill_trains_on_the_ground_truth_losses_only():
    model = _perturb(_model(distill=False))
    assert not model.momentum_models and not hasattr(model, "temperature") and not hasattr(model, "queue_t")
    batch = random_batch(SPEC, batch_size=8, seed=9)
    terms, stash, enc, _ = _terms(model, batch)
    assert set(terms) == {"gt"}
    classes = stash["classes"]
    outs = [*enc.unimodal.values(), enc.fusion]
    expected = sum((o.score - batch.y).abs().mean() + F.cross_entropy(o.logits, classes) for o in outs)
    torch.testing.assert_close(terms["gt"], expected)  # eq. 17
    assert hasattr(model, "fusion_factors")


@pytest.mark.parametrize("variant", sorted(MTMD.VARIANTS))
def test_every_variant_trains(variant):
    flat = resolve_config(MTMD, ModelSpec("mtmd", variant), "mosi", tiny=True)
    torch.manual_seed(0)
    model = MTMD(config_from_flat(MTMD.config_cls, flat), SPEC)
    params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    _train(model, [random_batch(SPEC, batch_size=7, seed=i) for i in range(3)])
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, params[n])]
    assert sorted(moved) == sorted(params)


def test_loss_weights_are_eq18():
    model = _perturb(_model(gamma_reg=0.6, gamma_cls=0.8, gamma_feat=1.0, gamma_fusion=0.6))
    terms, *_ = _terms(model, random_batch(SPEC, batch_size=8, seed=9))
    expected = terms["gt"] + 0.6 * terms["reg"] + 0.8 * terms["cls"] + terms["feat"] + 0.6 * terms["fusion"]
    torch.testing.assert_close(model.weighted_total(terms), expected)


# -- queues ----------------------------------------------------------------------------------------------

def test_queues_hold_the_classes_of_the_most_recent_samples():
    spec = make_input_spec(("t", "a", "v"), label_rule="round")
    model = _model(spec, queue_size=20)
    batches = []
    for i in range(4):  # one epoch of 4 batches of 7: 28 samples, the queue keeps the last 20
        b = random_batch(spec, batch_size=7, seed=40 + i)
        b.index = torch.arange(7 * i, 7 * i + 7)
        b.y = torch.linspace(-2.5, 2.5, 7)[torch.randperm(7, generator=torch.Generator().manual_seed(i))]
        batches.append(b)
    _train(model, batches, spec=spec)
    y = torch.cat([b.y for b in batches])
    order = torch.cat([(model.queue_index[model.queue_ptr:]), model.queue_index[: model.queue_ptr]])
    assert order.tolist() == list(range(8, 28))  # FIFO: the oldest 8 were overwritten
    assert torch.equal(model.queue_class, to_classes_t(y[model.queue_index], "round"))
    counts = torch.bincount(model.queue_class, minlength=3).tolist()
    values = model.epoch_values()
    assert [values["queue_negative"], values["queue_neutral"], values["queue_positive"]] == counts
    for name in model.queue_names():  # L2-normalised features (0 where ReLU left a sample no feature)
        norms = getattr(model, f"queue_{name}").norm(dim=-1)
        assert torch.all((norms - 1).abs().lt(1e-5) | norms.eq(0)) and norms.gt(0).float().mean() > 0.5


def to_classes_t(y, rule):
    return torch.from_numpy(to_classes(y.numpy(), rule))


def test_queues_fill_in_training_only():
    model = _model().eval()
    with torch.no_grad():
        model(random_batch(SPEC, batch_size=7, seed=1))
    assert int((model.queue_index >= 0).sum()) == 0


def test_records_get_the_fusion_factors_and_queue_counts():
    model = _model()
    ctx = _train(model, [random_batch(SPEC, batch_size=7, seed=i) for i in range(2)])
    records = [{"epoch": 0, "split": s} for s in ("train", "valid", "test")]
    model.on_validation_end(ctx, records)
    values = records[0]["model_values"]
    for i, m in enumerate("tav"):
        assert values[f"fusion_factor_{m}"] == pytest.approx(float(model.momentum_fusion_factors[i]))
        assert values[f"fusion_factor_online_{m}"] == pytest.approx(model.fusion_factors[i].item())
    assert values["queue_negative"] + values["queue_neutral"] + values["queue_positive"] == 14
    assert all(r["model_values"] == values for r in records)
    json.dumps(records)


# -- end to end: synth-mosi with pure-noise audio ----------------------------------------------------

@pytest.mark.slow
@pytest.mark.time_limit(300)
def test_synth_mosi_noisy_audio_queues_hold_the_training_classes(tmp_path):
    """One epoch of `standard` on synth-mosi with audio replaced by noise: the stored checkpoint's
    queues hold the label-rule classes of the training samples they name; the records carry the
    fusion factors."""
    from safetensors.torch import load_file

    from msabench.cli import main
    from msabench.plan.planner import load_for_config

    args = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--model", "mtmd", "--seeds", "1",
            "--tiny", "--no-mlflow", "--out", str(tmp_path), "--set", "data.noise_modality=a",
            "--set", "train.epochs=1", "--set", "train.batch_size=16", "--set", "text.encoder=features"]
    assert main(args) == 0
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "done").is_file()]
    state = load_file(str(run / "checkpoint-val.safetensors"))
    spec = json.loads((run / "spec.json").read_text())
    data = load_for_config("synth-mosi", spec["config"], None)  # what the run trained on
    index = state["queue_index"]
    assert int((index >= 0).sum()) == 32  # tiny queue: full after one epoch
    scores = np.asarray(data.splits["train"].regression)
    assert state["queue_class"].tolist() == to_classes(scores[index.numpy()], spec["label_rule"]).tolist()
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert {"fusion_factor_t", "fusion_factor_a", "fusion_factor_v"} <= set(records[0]["model_values"])
