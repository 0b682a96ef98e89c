"""`m3sa` (Modulation Model for MSA): the paper's equations, the two phases, every switch and variant."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from msabench.api import MODELS, UserError, config_from_flat
from msabench.api.conformance import make_input_spec, random_batch, training_context
from msabench.core.config import ModelSpec, parse_model_spec, resolve_config
from msabench.models.m3sa import modulation_weights, per_sample_loss

M3SA = MODELS.get("m3sa")
pytestmark = pytest.mark.time_limit(60)


def _model(seed=0, modalities=("t", "a", "v"), task="regression", **kw):
    torch.manual_seed(seed)
    return M3SA(dataclasses.replace(M3SA.tiny(), **kw), make_input_spec(modalities, task=task))


def _ctx(model, lr=1e-2, grad_accum=1):
    ctx = training_context(model, model.spec, lr=lr, n_train=8, steps_per_epoch=1, epochs=1)
    ctx.grad_accum = grad_accum
    return ctx


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _moved(module, before):
    return {n for n, p in module.named_parameters() if not torch.equal(p.detach(), before[n])}


# -- configuration --------------------------------------------------------------------------------

def test_variants_are_the_template_rows():
    from msabench.protocols.templates import TEMPLATES

    rows = {row.model for t in ("m3sa-table1", "m3sa-table2", "m3sa-table3", "m3sa-table4")
            for row in TEMPLATES.get(t).rows if row.model and row.model.startswith("m3sa")}
    assert {parse_model_spec(r).variant for r in rows} == set(M3SA.VARIANTS)  # exactly the table rows
    keys = ("model.filter", "model.unimodal_loss", "model.modality_filter", "model.baseline_embedding",
            "model.fusion")
    expected = {"": ("soft", "modulated", True, True, "add")}
    for kind in ("hard", "soft"):
        expected[kind] = (kind, "modulated", True, True, "add")
        expected[f"{kind}-no-ml"] = (kind, "none", True, True, "add")
        expected[f"{kind}-no-mfm"] = (kind, "modulated", False, True, "add")
        expected[f"{kind}-no-be"] = (kind, "modulated", True, False, "add")
        for fusion in ("concat", "tensor", "graph"):
            expected[f"{kind}-{fusion}"] = (kind, "modulated", True, True, fusion)
    for variant, values in expected.items():
        flat = resolve_config(M3SA, ModelSpec("m3sa", variant or None), "mosi")
        assert tuple(flat[k] for k in keys) == values, variant


def test_paper_defaults_and_presets():
    flat = resolve_config(M3SA, ModelSpec("m3sa"), "mosi")
    assert (flat["train.optimizer"], flat["train.lr"], flat["train.text_lr"]) == ("adam", 1e-5, 1e-5)  # C.4
    assert flat["model.soft_scale"] == 1000.0  # lambda, C.4
    assert (flat["model.hard_temperature"], flat["model.hard_stretch_low"], flat["model.hard_stretch_high"]) == (
        pytest.approx(2 / 3), -0.1, 1.1)  # Louizos et al.
    assert (flat["model.hidden"], flat["model.num_heads"], flat["model.layers"]) == (50, 5, 3)  # MIB code
    assert (flat["text.encoder"], flat["text.frozen"]) == ("bert-base-uncased", False)
    assert resolve_config(M3SA, ModelSpec("m3sa"), "sims")["text.encoder"] == "bert-base-chinese"
    assert M3SA.USES_TEXT_ENCODER
    # --tiny on the synthetic suite swaps the default BERT for tiny-bert (the planner's rule)
    from msabench.plan.planner import _tiny_text_encoder

    assert _tiny_text_encoder(resolve_config(M3SA, ModelSpec("m3sa"), "mosi", tiny=True), chosen=False)[
        "text.encoder"] == "tiny-bert"


def test_unknown_choices_are_user_errors():
    for key, value in (("filter", "medium"), ("fusion", "product"), ("unimodal_loss", "mean")):
        with pytest.raises(UserError, match=f"model.{key}"):
            _model(**{key: value})


def _layer_params(d):  # one pre-LN transformer layer: q, k, v, out, two LayerNorms, FFN d -> 4d -> d
    return 4 * (d * d + d) + 4 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)


def test_parameter_count_at_mosi_shapes():
    spec = make_input_spec(("t", "a", "v"), dims={"t": 768, "a": 5, "v": 20}, max_lens={"t": 50, "a": 375, "v": 500})
    cfg = config_from_flat(M3SA.config_cls, resolve_config(M3SA, ModelSpec("m3sa"), "mosi"))
    with torch.device("meta"):
        model = M3SA(cfg, spec)
    d = 50
    count = {name: sum(p.numel() for p in mod.parameters()) for name, mod in model.named_children()}
    assert count["unimodal"] == (768 + 5 + 20) * d * 3 + 2 * (3 * _layer_params(d) + 2 * d)  # Conv1D k3; 3 layers + LN
    assert count["filter"] == (3 * d * d + d) + 3 * ((d * d + d) + (d * 2 + 2))  # eq. 14 Linear; a filter per modality
    assert count["baselines"] == 3 * d
    assert count["fusion"] == 0  # addition has no parameters (eq. 24)
    assert count["head"] == (d * d + d) + (d + 1)


# -- modulation loss (eqs. 10-13) and the two phases ---------------------------------------------

def test_modulation_weights_follow_eqs_11_to_13():
    losses = {"t": torch.tensor([0.5, 1.0]), "a": torch.tensor([2.0, 1.0]), "v": torch.tensor([1.0, 1.0])}
    weights = modulation_weights(losses)
    alpha = 3.0 / (1 / 0.5 + 1 / 2.0 + 1 / 1.0)  # harmonic mean of the first sample's losses
    assert float(weights["t"][0]) == pytest.approx(alpha * 2.0 * 1.0)  # alpha^l = alpha l^a l^v
    assert float(weights["a"][0]) == pytest.approx(alpha * 0.5 * 1.0)
    assert float(weights["v"][0]) == pytest.approx(alpha * 0.5 * 2.0)
    # l^m_2 = l^m alpha^m = alpha prod_k l^k for every m; the noisiest modality gets the smallest weight
    modulated = {m: losses[m] * weights[m] for m in losses}
    for m in losses:
        assert float(modulated[m][0]) == pytest.approx(alpha * 0.5 * 2.0 * 1.0)
    assert float(weights["a"][0]) < float(weights["v"][0]) < float(weights["t"][0])
    assert all(float(w[1]) == pytest.approx(1.0) for w in weights.values())  # equal losses: weight 1
    # the weights are constants of the step (no gradient through them), finite at a zero loss
    grad = {m: v.clone().requires_grad_(True) for m, v in losses.items()}
    assert not any(w.requires_grad for w in modulation_weights(grad).values())
    zero = modulation_weights({"t": torch.zeros(1), "a": torch.ones(1)})
    assert all(torch.isfinite(w).all() for w in zero.values())


def test_per_sample_losses_per_task():
    y = torch.tensor([1.0, -2.0])
    assert per_sample_loss("regression", torch.tensor([0.5, 0.0]), y).tolist() == [0.5, 2.0]
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    ce = per_sample_loss("classification", logits, torch.tensor([0, 1]))
    assert ce.shape == (2,) and ce[0] < ce[1]
    assert per_sample_loss("multilabel", torch.zeros(2, 4), torch.ones(2, 4)).tolist() == pytest.approx(
        [math.log(2)] * 2)


def test_unimodal_phase_steps_only_the_unimodal_networks_through_the_shared_classifier():
    model = _model()
    batch = random_batch(model.spec, batch_size=7, seed=1)
    ctx = _ctx(model)
    before = _snapshot(model)
    model.train()
    logged = model.unimodal_phase(batch, ctx)
    moved = _moved(model, before)
    assert moved and all(n.startswith("unimodal.") for n in moved)  # C, MFM and fusion untouched
    assert {n for n, _ in model.unimodal.named_parameters()} == {n[len("unimodal."):] for n in moved}
    assert all(p.grad is None for p in model.head.parameters())  # C's weights were detached
    assert set(logged) == {"unimodal", "unimodal_t", "unimodal_a", "unimodal_v"}


def test_unimodal_loss_switch():
    batch = random_batch(make_input_spec(("t", "a", "v")), batch_size=7, seed=2)
    after, logged = {}, {}
    for kind in ("modulated", "plain"):
        model = _model(unimodal_loss=kind)
        model.train()
        torch.manual_seed(3)  # same dropout masks
        logged[kind] = model.unimodal_phase(batch, _ctx(model))
        after[kind] = _snapshot(model.unimodal)
    per_modality = [logged["plain"][f"unimodal_{m}"] for m in "tav"]
    assert logged["plain"]["unimodal"] == pytest.approx(sum(per_modality), rel=1e-5)  # sum of plain means
    assert logged["modulated"]["unimodal"] != pytest.approx(logged["plain"]["unimodal"], rel=1e-3)
    assert any(not torch.equal(after["modulated"][n], after["plain"][n]) for n in after["plain"])
    # W/O ML: no unimodal phase, the whole model trains on the multimodal loss only
    model = _model(unimodal_loss="none")
    before = _snapshot(model)
    logged_none = model.training_step(batch, _ctx(model))
    assert not any(k.startswith("unimodal") for k in logged_none)
    assert "penalty" in logged_none and logged_none["total"] == pytest.approx(
        logged_none["task"] + logged_none["penalty"], rel=1e-5)
    assert _moved(model.unimodal, {n[len("unimodal."):]: v for n, v in before.items() if n.startswith("unimodal.")})


def test_training_step_runs_both_phases_and_the_epoch_masks_go_into_the_records():
    model = _model()
    with torch.no_grad():  # known gates: s^t_1 = sigmoid(4), s^a_1 = sigmoid(-2), s^v_1 = 1/2 for every sample
        for m, c in zip("tav", (0.002, -0.001, 0.0)):
            model.filter.networks[m][2].weight.zero_()
            model.filter.networks[m][2].bias.copy_(torch.tensor([c, -c]))
    batches = [random_batch(model.spec, batch_size=n, seed=4 + n) for n in (7, 5)]
    ctx = _ctx(model, lr=0.0)  # the gates stay as set
    model.train()
    model.on_epoch_start(ctx)
    for b in batches:
        logged = model.training_step(b, ctx)
        assert {"unimodal", "task", "total", "penalty"} <= set(logged) and not any(k.startswith("mask") for k in logged)
    assert ctx.step_index == 4  # one step per phase and batch
    records = [{"split": "train"}, {"split": "valid"}]
    model.on_validation_end(ctx, records)
    values = records[0]["model_values"]
    assert records[1]["model_values"] == values
    assert values == pytest.approx({"mask_t": math.exp(4) / (1 + math.exp(4)), "mask_a": 1 / (1 + math.exp(2)),
                                    "mask_v": 0.5}, rel=1e-5)
    assert ctx.state["mask_sums"]["mask_a"][1] == 12  # sample-weighted over the epoch's two batches
    model.on_epoch_start(ctx)  # a new epoch starts from nothing
    assert ctx.state["mask_sums"] == {}
    no_filter = _model(modality_filter=False)
    ctx = _ctx(no_filter)
    no_filter.on_epoch_start(ctx)
    no_filter.training_step(batches[0], ctx)
    records = [{"split": "train"}]
    no_filter.on_validation_end(ctx, records)
    assert "model_values" not in records[0]  # W/O MFM: no gates
    with pytest.raises(UserError, match="grad_accum"):
        model.training_step(batches[0], _ctx(model, grad_accum=2))


def test_fine_tuned_text_encoder_is_a_unimodal_network_at_text_lr():
    torch.manual_seed(0)
    spec = make_input_spec(("t", "a"), text_kind="encoded")
    model = M3SA(M3SA.tiny(), spec)
    groups = model.param_groups({"train.lr": 1e-3, "train.text_lr": 7e-6})
    encoder = {id(p) for p in model.unimodal.text_encoder().parameters()}
    text_group = [g for g in groups["unimodal"] if g.get("name") == "text_encoder"]
    assert len(text_group) == 1 and text_group[0]["lr"] == 7e-6
    assert {id(p) for p in text_group[0]["params"]} == encoder
    assert not encoder & {id(p) for g in groups["main"] for p in g["params"]}


# -- modality filter module (eqs. 14-21) ----------------------------------------------------------

def _filter_logits(model, enc):
    joint = model.filter.shift_proj(torch.cat([enc.unimodal[m] for m in model.modalities], dim=-1))
    return {m: model.filter.networks[m](torch.relu(joint - enc.unimodal[m])) for m in model.modalities}


def test_soft_filter_eqs_14_to_20():
    model = _model(filter="soft").eval()
    with torch.no_grad():
        for m, c in zip("tav", (0.002, -0.001, 0.0)):  # lambda (z1 - z2) = 2 c lambda: 4, -2, 0
            model.filter.networks[m][2].weight.zero_()
            model.filter.networks[m][2].bias.copy_(torch.tensor([c, -c]))
            model.baselines[m].normal_()
        batch = random_batch(model.spec, batch_size=5, seed=5)
        enc = model.encode(batch)
        logits = _filter_logits(model, enc)
        for m in "tav":
            s = torch.softmax(1000.0 * logits[m], dim=-1)  # eq. 18
            torch.testing.assert_close(enc.keep[m], s[:, 0])
            expected = s[:, :1] * enc.unimodal[m] + s[:, 1:] * model.baselines[m]  # eq. 20
            torch.testing.assert_close(enc.filtered[m], expected)
        assert float(enc.keep["t"].mean()) == pytest.approx(torch.sigmoid(torch.tensor(4.0)).item(), abs=1e-4)
        assert float(enc.keep["a"].mean()) == pytest.approx(torch.sigmoid(torch.tensor(-2.0)).item(), abs=1e-4)
        penalty = torch.stack([1 - (enc.keep[m] - (1 - enc.keep[m])) ** 2 for m in "tav"]).mean()  # eq. 19
        torch.testing.assert_close(enc.penalty, penalty)
        out = model(batch)
        torch.testing.assert_close(out.aux_losses["penalty"], penalty)
        torch.testing.assert_close(out.features["mask_a"], enc.keep["a"])
        torch.testing.assert_close(out.features["fusion"], sum(enc.filtered[m] for m in "tav"))  # eq. 24


def test_hard_filter_is_hard_concrete_in_training_and_binary_at_evaluation():
    model = _model(filter="hard")
    batch = random_batch(model.spec, batch_size=64, seed=6)
    with torch.no_grad():
        model.train()
        torch.manual_seed(0)
        keep = model.encode(batch).keep["t"]  # log alpha near 0 at initialisation
        assert keep.min() >= 0.0 and keep.max() <= 1.0
        assert (keep == 0).any() and (keep == 1).any() and ((keep > 0) & (keep < 1)).any()  # mass at 0 and 1
        assert "penalty" not in model(batch).aux_losses  # no extra objective (section 3.4.2)
        model.eval()
        for bias, expected in ((0.05, 1.0), (-0.05, 0.0)):  # 1 iff sigmoid(z)(zeta - gamma) + gamma > 0.5
            for m in "tav":
                model.filter.networks[m][2].weight.zero_()
                model.filter.networks[m][2].bias.fill_(bias)
            enc = model.encode(batch)
            assert all(torch.equal(enc.keep[m], torch.full_like(enc.keep[m], expected)) for m in "tav")
        filtered_out = enc.filtered["v"]
        assert torch.allclose(filtered_out, model.baselines["v"].expand_as(filtered_out))


def test_no_modality_filter_and_no_baseline_embedding():
    batch = random_batch(make_input_spec(("t", "a", "v")), batch_size=5, seed=7)
    preds = {}
    for kind in ("hard", "soft"):
        model = _model(filter=kind, modality_filter=False).eval()
        assert not hasattr(model, "filter") and not hasattr(model, "baselines")
        with torch.no_grad():
            enc = model.encode(batch)
            out = model(batch)
        assert enc.filtered is enc.unimodal and not enc.keep and not out.aux_losses
        assert not any(k.startswith("mask_") for k in out.features)
        preds[kind] = out.pred
    torch.testing.assert_close(preds["hard"], preds["soft"])  # W/O MFM: the filter kind plays no part
    model = _model(baseline_embedding=False).eval()
    assert not hasattr(model, "baselines")
    with torch.no_grad():
        enc = model.encode(batch)
    for m in "tav":  # x^m_2 = s^m x^m: a filtered modality becomes zero
        torch.testing.assert_close(enc.filtered[m], enc.keep[m].unsqueeze(-1) * enc.unimodal[m])


def test_shared_filter_switch():
    shared = _model(shared_filter=True)
    assert list(shared.filter.networks) == ["shared"]
    assert list(_model().filter.networks) == ["t", "a", "v"]
    batch = random_batch(shared.spec, batch_size=4, seed=8)
    with torch.no_grad():
        shared.filter.networks["shared"][2].weight.zero_()
        shared.filter.networks["shared"][2].bias.copy_(torch.tensor([0.003, 0.0]))
        keep = shared.eval().encode(batch).keep
    assert all(float(keep[m].mean()) > 0.9 for m in "tav")  # one network decides for every modality


# -- fusion (appendix B) --------------------------------------------------------------------------

@pytest.mark.parametrize("fusion", ["add", "concat", "tensor", "graph"])
def test_fusions(fusion):
    model = _model(fusion=fusion)
    d = model.cfg.hidden
    n_params = sum(p.numel() for p in model.fusion.parameters())
    expected = {"add": 0, "concat": 3 * d * d + d, "tensor": (d + 1) ** 3 * d + d,
                "graph": (d + 1) + 2 * ((2 * d * model.cfg.graph_hidden + model.cfg.graph_hidden)
                                        + (model.cfg.graph_hidden * d + d))}[fusion]
    assert n_params == expected
    batch = random_batch(model.spec, batch_size=5, seed=9)
    model.eval()
    with torch.no_grad():
        enc = model.encode(batch)
    xs = [enc.filtered[m] for m in "tav"]
    assert enc.fused.shape == (5, d)
    if fusion == "tensor":  # eqs. 26-27: the outer product of [x^m, 1]
        ones = torch.ones(5, 1)
        outer = torch.einsum("bi,bj,bk->bijk", *[torch.cat([x, ones], dim=-1) for x in xs]).flatten(1)
        torch.testing.assert_close(enc.fused, model.fusion.fc(outer))
    if fusion == "concat":
        torch.testing.assert_close(enc.fused, model.fusion.fc(torch.cat(xs, dim=-1)))
    # the fused representation trains: the multimodal loss reaches every fusion parameter
    model.train()
    loss = model(batch).pred.abs().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fusion.parameters())


def test_graph_fusion_layers_per_modality_count():
    from msabench.models.m3sa import GraphFusion

    torch.manual_seed(0)
    graph = GraphFusion(4, 6)
    x = [torch.randn(3, 4) for _ in range(3)]
    s = [torch.tanh(graph.node_score(v)) for v in x]
    torch.testing.assert_close(graph([x[0]]), s[0] * x[0])  # one modality: the unimodal layer alone
    two = graph(x[:2])
    unimodal = (s[0] * x[0] + s[1] * x[1]) / 2
    pair = torch.tanh(graph.pair_net(torch.cat(x[:2], dim=-1)))  # one pair: its softmax weight is 1
    torch.testing.assert_close(two, (unimodal + pair) / 2)
    assert graph(x).shape == (3, 4)


# -- the filter and a noisy modality -------------------------------------------------------------

NOISY_SPEC = make_input_spec(("t", "a"), max_lens={"t": 6, "a": 8})


def _noisy_audio_batch(seed, n):
    b = random_batch(NOISY_SPEC, batch_size=n, seed=seed)  # text carries the label
    noise = torch.Generator().manual_seed(100 + seed)
    b.audio = torch.randn(b.audio.shape, generator=noise) * b.audio_mask[..., None]  # no label information
    return b


def _held_out_masks(epochs=25, **kw):
    """Train on 4 batches whose audio is pure noise; the mean gate per modality on held-out samples
    (train mode: the hard filter's Hard Concrete gates, whose mean is the share of kept samples)."""
    torch.manual_seed(0)
    model = M3SA(dataclasses.replace(M3SA.tiny(), **kw), NOISY_SPEC)
    train = [_noisy_audio_batch(s, 24) for s in range(4)]
    ctx = training_context(model, NOISY_SPEC, lr=3e-3, n_train=96, steps_per_epoch=4, epochs=epochs)
    model.train()
    for epoch in range(epochs):
        ctx.epoch = epoch
        for b in train:
            model.training_step(b, ctx)
    torch.manual_seed(1)
    with torch.no_grad():
        return model.encode(_noisy_audio_batch(99, 128)).keep


@pytest.mark.parametrize("settings", [{"filter": "hard"}, {"filter": "soft", "soft_scale": 1.0, "penalty_weight": 0.0}],
                         ids=["hard", "soft-lambda1"])
def test_noisy_modality_gets_a_lower_mask_than_text(settings):
    """The filter learns to close the modality that carries no information and to keep text. The soft
    filter does so at lambda = 1; at the paper's lambda = 1000 its gates lock before the model has
    learned (next test, and the module docstring's measurements)."""
    means = {m: float(v.mean()) for m, v in _held_out_masks(**settings).items()}
    assert means["t"] > 0.9 and means["a"] < means["t"] - 0.2, means


def test_soft_filter_at_lambda_1000_gives_near_binary_masks():
    """lambda = 1000 and the penalty l_p drive every mask to 0 or 1 (the paper's Fig. 2 observation)."""
    keep = torch.cat(list(_held_out_masks(filter="soft").values()))
    assert float(((keep < 0.01) | (keep > 0.99)).float().mean()) > 0.95
