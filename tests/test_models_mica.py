"""`mica` (Modality-Invariant Crossmodal Attention): structure, Table 1 presets, Table 5 switches."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from msabench.api import MODELS, config_from_flat
from msabench.api.conformance import make_input_spec, random_batch, training_context
from msabench.core.config import ModelSpec, parse_model_spec, resolve_config
from msabench.models.layers.transformer import real_positions, sinusoidal_embedding
from msabench.models.mica import MergeGate, element_distance, gaussian_mmd, matched_pairs, propagated

MICA = MODELS.get("mica")

# MICA at MOSI shapes (text 768 x 50, audio 5 x 375, vision 20 x 500, regression, Table 1's
# CMU-MOSI column: d 40, 8 heads, D 4, kernels 3/3/3). No reference implementation exists to count
# against (MICA has no public code, and MMSA 2.2.1 has no MICA); the parts are checked below.
MOSI_PARAMS = 1_020_161


def _mosi_spec(task="regression"):
    return make_input_spec(("t", "a", "v"), task=task, dims={"t": 768, "a": 5, "v": 20},
                           max_lens={"t": 50, "a": 375, "v": 500})


def _layer_params(d):  # one pre-LN transformer layer: q, k, v, out, two LayerNorms, FFN d -> 4d -> d
    return 4 * (d * d + d) + 4 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)


def test_parameter_count_at_mosi_shapes():
    cfg = config_from_flat(MICA.config_cls, resolve_config(MICA, ModelSpec("mica"), "mosi"))
    with torch.device("meta"):
        model = MICA(cfg, _mosi_spec())
    d = 40
    parts = {name: sum(p.numel() for p in mod.parameters()) for name, mod in model.named_children()}
    assert parts["proj"] == (768 + 5 + 20) * d * 3  # bias-free Conv1d, kernel 3
    assert parts["blocks"] == 4 * 6 * _layer_params(d)  # D layers x 6 directions
    # a gate per layer and target: W_{s1->t}, W_{s2->t} (d x d) and b_t (T'_t x d), T' = T - 3 + 1
    assert parts["gates"] == 4 * (3 * 2 * d * d + (48 + 373 + 498) * d)
    assert parts["memory"] == 3 * (4 * _layer_params(d) + 2 * d)  # max(D, 3) layers + final LayerNorm
    assert parts["cross_norm"] == 3 * 2 * d
    assert parts["proj1"] + parts["proj2"] + parts["out_layer"] == 2 * (120 * 120 + 120) + 121  # MulT's head, 3d
    assert sum(p.numel() for p in model.parameters()) == MOSI_PARAMS


def test_table1_presets():
    expected = {  # family: (lr, batch, epochs, d, heads, tau, alpha, beta, kernels t/v/a, D)
        "mosi": (1e-3, 64, 120, 40, 8, 0.25, 0.8, 0.5, (3, 3, 3), 4),
        "mosei": (5e-4, 64, 120, 40, 10, 0.3, 0.8, 0.5, (3, 3, 3), 6),
        "iemocap": (1e-3, 32, 80, 40, 10, 0.25, 0.7, 0.5, (3, 3, 5), 4),
    }
    for family, (lr, bs, epochs, d, heads, tau, alpha, beta, kernels, layers) in expected.items():
        flat = resolve_config(MICA, ModelSpec("mica"), family)
        assert (flat["train.lr"], flat["train.batch_size"], flat["train.epochs"]) == (lr, bs, epochs)
        assert flat["train.optimizer"] == "adam"
        assert flat["train.clip"] == 0.8  # not in the paper: MulT's main.py (and its Table 5, CMU-MOSI)
        cfg = config_from_flat(MICA.config_cls, flat)
        assert (cfg.embed_dim, cfg.num_heads, cfg.tau, cfg.alpha, cfg.beta, cfg.layers) == (
            d, heads, tau, alpha, beta, layers)
        assert (cfg.conv_kernel_t, cfg.conv_kernel_v, cfg.conv_kernel_a) == kernels


def test_table5_variants_are_registered_with_the_template_names():
    from msabench.protocols.templates import TEMPLATES

    for table in ("mica-table2", "mica-table3", "mica-table4", "mica-table5"):
        for row in TEMPLATES.get(table).rows:
            if row.model and row.model.startswith("mica"):
                spec = parse_model_spec(row.model)
                resolve_config(MICA, spec, "mosei")  # raises for an unknown variant
    flat = {v: resolve_config(MICA, ModelSpec("mica", v), "mosei") for v in ("backbone", "mmd", "no-propagation")}
    assert (flat["backbone"]["model.alpha"], flat["backbone"]["model.beta"]) == (0.0, 0.0)
    assert (flat["mmd"]["model.alpha"], flat["mmd"]["model.beta"]) == (0.8, 0.0)
    assert flat["no-propagation"]["model.propagate"] is False
    assert flat["no-propagation"]["model.alpha"] == 0.8 and flat["no-propagation"]["model.beta"] == 0.5


def _model(layers=2, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dataclasses.replace(MICA.tiny(), layers=layers, **kw)
    return MICA(cfg, make_input_spec(("t", "a", "v")))


def test_gated_merge_at_every_layer():
    model = _model(layers=3)
    assert len(model.blocks) == 3 and len(model.gates) == 3
    for blocks, gates in zip(model.blocks, model.gates):
        assert sorted(blocks) == ["a_with_t", "a_with_v", "t_with_a", "t_with_v", "v_with_a", "v_with_t"]
        assert sorted(gates) == ["a", "t", "v"]
    # the gate: G = sigmoid(Z1 W1 + Z2 W2 + b); Z = G Z1 + (1 - G) Z2
    gate = MergeGate(4, 5)
    z1, z2 = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    with torch.no_grad():
        g = torch.sigmoid(gate.w1(z1) + gate.w2(z2) + gate.bias[:3])
        torch.testing.assert_close(gate(z1, z2), g * z1 + (1 - g) * z2)
        gate.bias.fill_(50.0)
        gate.w1.weight.zero_()
        gate.w2.weight.zero_()
        torch.testing.assert_close(gate(z1, z2), z1)
    # changing a middle layer's gate changes the output: every layer merges
    batch = random_batch(model.spec, batch_size=4, seed=1)
    model.eval()
    with torch.no_grad():
        before = model(batch).pred.clone()
        model.gates[1]["t"].bias.add_(3.0)
        assert not torch.allclose(model(batch).pred, before)
    # two modalities: one source per target, no gate
    assert all(len(g) == 0 for g in MICA(MICA.tiny(), make_input_spec(("t", "v"))).gates)


def test_matched_set_is_the_top_tau_share_of_real_pairs():
    torch.manual_seed(0)
    probs = torch.rand(2, 3, 4, 5).softmax(-1)  # distinct values
    qm = torch.tensor([[True] * 4, [True, True, False, False]])
    km = torch.tensor([[True] * 5, [True, True, True, False, False]])
    probs = probs * qm[:, None, :, None] * km[:, None, None, :]
    w = matched_pairs(probs, qm, km, tau=0.25)
    assert w.sum(dim=(-1, -2)).tolist() == [[5] * 3, [1] * 3]  # floor(0.25 * 20), floor(0.25 * 6)
    assert not w[1, :, 2:].any() and not w[1, :, :, 3:].any()  # padding never matched
    for b, h in ((0, 1), (1, 2)):
        chosen = probs[b, h][w[b, h]]
        rest = probs[b, h][~w[b, h] & qm[b][:, None] & km[b][None, :]]
        assert chosen.min() > rest.max()


def test_propagation_changes_the_matched_set():
    w0 = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    w1 = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    w0[0, 0, 0, 0] = True
    w1[0, 0, 1, 1] = True
    with_prop = propagated([w0, w1], propagate=True)
    without = propagated([w0, w1], propagate=False)
    assert torch.equal(with_prop[0], w0) and torch.equal(without[0], w0)  # V^[0] = W^[0]
    assert torch.equal(with_prop[1], w0 | w1) and torch.equal(without[1], w1)


def test_no_propagation_changes_the_element_loss_only_after_the_first_layer():
    batch = random_batch(make_input_spec(("t", "a", "v")), batch_size=6, seed=3)
    losses = {}
    for propagate in (True, False):
        model = _model(layers=3, propagate=propagate).eval()
        with torch.no_grad():
            traces = model.encode(batch, return_traces=True).traces
            losses[propagate] = model.alignment_losses(traces)
            first = {k: [v[0]] for k, v in traces.items()}
            losses[(propagate, "first")] = model.alignment_losses(first)
    torch.testing.assert_close(losses[True]["mmd"], losses[False]["mmd"])
    torch.testing.assert_close(losses[(True, "first")]["element"], losses[(False, "first")]["element"])
    assert not torch.allclose(losses[True]["element"], losses[False]["element"])


def _step(model, batch):
    ctx = training_context(model, model.spec, lr=1e-3, n_train=8, steps_per_epoch=1, epochs=1)
    ctx.epoch = 0
    model.train()
    torch.manual_seed(5)  # same dropout masks and MMD draws for every model
    return model.training_step(batch, ctx)


@pytest.mark.parametrize("alpha,beta", [(0.8, 0.5), (0.0, 0.5), (0.8, 0.0), (0.0, 0.0)])
def test_loss_weights_switch_their_terms(alpha, beta):
    """L = L_p + alpha L_m + beta L_e: a zero weight removes that term (Table 5's rows)."""
    batch = random_batch(make_input_spec(("t", "a", "v")), batch_size=8, seed=2)
    logged = _step(_model(alpha=alpha, beta=beta), batch)
    assert ("mmd" in logged) is (alpha > 0) and ("element" in logged) is (beta > 0)
    expected = logged["task"] + alpha * logged.get("mmd", 0.0) + beta * logged.get("element", 0.0)
    assert logged["total"] == pytest.approx(expected, rel=1e-5)
    if alpha > 0:
        assert logged["mmd"] > 0
    if beta > 0:
        assert logged["element"] > 0
    if alpha == beta == 0:
        assert logged["total"] == logged["task"]


def test_alignment_losses_reach_the_query_and_key_projections():
    model = _model(alpha=0.8, beta=0.5)
    batch = random_batch(model.spec, batch_size=6, seed=4)
    losses = model.alignment_losses(model.encode(batch, return_traces=True).traces)
    for name, loss in losses.items():
        model.zero_grad()
        loss.backward(retain_graph=True)
        attn = model.blocks[0]["t_with_a"].attention
        assert attn.q_proj.weight.grad.abs().sum() > 0, name
        assert attn.k_proj.weight.grad.abs().sum() > 0, name
        assert model.out_layer.weight.grad is None or model.out_layer.weight.grad.abs().sum() == 0


def test_mmd_is_zero_for_one_distribution_and_grows_with_the_shift():
    torch.manual_seed(0)
    x = torch.randn(200, 6)
    assert float(gaussian_mmd(x, x.clone())) == pytest.approx(0.0, abs=1e-6)
    shifts = [float(gaussian_mmd(x, torch.randn(200, 6) + s)) for s in (0.0, 1.0, 3.0)]
    assert shifts[0] < shifts[1] < shifts[2]


def test_multilabel_head_has_four_logits():
    spec = make_input_spec(("t", "a", "v"), task="multilabel")
    model = MICA(MICA.tiny(), spec).eval()
    with torch.no_grad():
        assert model(random_batch(spec, batch_size=3, seed=0)).pred.shape == (3, 4)


def test_gate_bias_channel_shares_one_row_across_positions():
    """model.gate_bias: "position" (T_t x d, as printed) or "channel" (one d-vector for every position)."""
    per_position, shared = _model(layers=1, seed=7), _model(layers=1, seed=7, gate_bias="channel")
    gate_p, gate_c = per_position.gates[0]["t"], shared.gates[0]["t"]
    assert gate_c.bias.shape == (1, 8) and gate_p.bias.shape[0] > 1
    n_rows = sum(gates[t].bias.shape[0] - 1 for gates in per_position.gates for t in gates)
    n_p = sum(p.numel() for p in per_position.parameters())
    assert n_p - sum(p.numel() for p in shared.parameters()) == n_rows * 8
    batch = random_batch(per_position.spec, batch_size=4, seed=2)
    per_position.eval()
    shared.eval()
    with torch.no_grad():
        for m in ("t", "a", "v"):  # the same row at every position: the same computation
            shared.gates[0][m].bias.copy_(torch.randn(1, 8))
            per_position.gates[0][m].bias.copy_(shared.gates[0][m].bias.expand_as(per_position.gates[0][m].bias))
        torch.testing.assert_close(per_position(batch).pred, shared(batch).pred)
        per_position.gates[0]["t"].bias[1:].add_(2.0)  # rows that differ by position: only "position" can
        assert not torch.allclose(per_position(batch).pred, shared(batch).pred)
    with pytest.raises(ValueError, match="gate_bias"):
        _model(gate_bias="time")


def test_sources_input_keeps_the_low_level_sources_after_the_first_layer():
    """model.sources: layer i > 0 attends to the merged Z_s^[i] ("merged") or to Z_s^[0] ("input", MulT's)."""
    batch = random_batch(make_input_spec(("t", "a", "v")), batch_size=4, seed=6)
    preds, traces = {}, {}
    for sources in ("merged", "input"):
        model = _model(layers=2, seed=3, sources=sources).eval()  # the switch adds no parameter
        with torch.no_grad():
            traces[sources] = model.encode(batch, return_traces=True).traces
            preds[sources] = model(batch).pred
            z0, _ = model.embed(batch)
            block = model.blocks[1]["t_with_a"]
            from_input = block.attention.k_proj(block.attn_norm(z0["a"]))  # layer 1's keys from Z_a^[0]
    first = [traces[s]["t_with_a"][0].keys for s in ("merged", "input")]
    torch.testing.assert_close(first[0], first[1])  # layer 0 sees Z^[0] either way
    torch.testing.assert_close(traces["input"]["t_with_a"][1].keys, from_input)
    assert not torch.allclose(traces["merged"]["t_with_a"][1].keys, from_input)
    assert not torch.allclose(preds["merged"], preds["input"])
    with pytest.raises(ValueError, match="sources"):
        _model(sources="both")


def test_text_dropout_drops_the_text_input_before_its_convolution():
    """model.text_dropout: MulT's code drops the text input (x_l) before the temporal conv."""
    batch = random_batch(make_input_spec(("t", "a", "v")), batch_size=4, seed=8)
    out = {}
    for p in (0.0, 1.0):
        model = _model(layers=1, seed=4, text_dropout=p, embed_dropout=0.0).train()
        with torch.no_grad():
            out[p] = model.embed(batch)
    z_kept, masks = out[0.0]
    z_dropped, _ = out[1.0]
    positions = sinusoidal_embedding(real_positions(masks["t"]), 8)  # all text dropped: conv(0) = 0
    torch.testing.assert_close(z_dropped["t"], positions)
    assert not torch.allclose(z_kept["t"], positions)
    for m in ("a", "v"):  # only the text input
        torch.testing.assert_close(z_kept[m], z_dropped[m])


def test_element_norm_sum_is_eq2_as_printed_and_pairs_its_mean_over_matches():
    """model.element_norm: "sum" = sum_{n,m} V ||q_n - k_m||^2 (eq. 2, summed over heads); "pairs" divides
    each head's sum by its matched-pair count and averages the heads."""
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 4)  # 2 heads of width 2
    weights = torch.rand(2, 2, 3, 5) > 0.5
    weights[:, :, 0, 0] = True
    sums = torch.zeros(2, 2)
    for b in range(2):
        for h in range(2):
            sl = slice(2 * h, 2 * h + 2)
            for n in range(3):
                for m in range(5):
                    if weights[b, h, n, m]:
                        sums[b, h] += (q[b, n, sl] - k[b, m, sl]).pow(2).sum()
    torch.testing.assert_close(element_distance(q, k, weights, 2, "sum"), sums.sum(1))
    torch.testing.assert_close(element_distance(q, k, weights, 2, "pairs"),
                               (sums / weights.sum(dim=(-1, -2))).mean(1))
    batch = random_batch(make_input_spec(("t", "a", "v")), batch_size=4, seed=9)
    element = {}
    for norm in ("pairs", "sum"):
        model = _model(layers=2, seed=2, element_norm=norm).eval()
        with torch.no_grad():
            element[norm] = model.alignment_losses(model.encode(batch, return_traces=True).traces)["element"]
    assert float(element["sum"]) > 2 * float(element["pairs"])  # each head keeps >= 1 pair; most keep several
    with pytest.raises(ValueError, match="element_norm"):
        _model(element_norm="mean")


def test_align_warmup_ramps_both_alignment_weights_from_zero():
    """model.align_warmup_epochs (not in the paper): alpha and beta scaled by step / (warm-up steps), capped at 1."""
    batch = random_batch(make_input_spec(("t", "a", "v")), batch_size=8, seed=2)
    logged = {}
    for step in (0, 3, 8, 20):
        model = _model(alpha=0.8, beta=0.5, align_warmup_epochs=2.0)
        ctx = training_context(model, model.spec, lr=1e-3, n_train=32, steps_per_epoch=4, epochs=5)
        ctx.step_index = step
        model.train()
        torch.manual_seed(5)
        logged[step] = model.training_step(batch, ctx)
    for step, ramp in ((0, 0.0), (3, 3 / 8), (8, 1.0), (20, 1.0)):
        out = logged[step]
        assert out["align_ramp"] == pytest.approx(ramp)
        assert out["mmd"] > 0 and out["element"] > 0  # the terms are computed (and logged) while ramped
        expected = out["task"] + ramp * (0.8 * out["mmd"] + 0.5 * out["element"])
        assert out["total"] == pytest.approx(expected, rel=1e-5)
    assert logged[0]["total"] == pytest.approx(logged[0]["task"], rel=1e-6)
    assert "align_ramp" not in _step(_model(alpha=0.8, beta=0.5), batch)  # 0 = the paper: no ramp
    with pytest.raises(ValueError, match="align_warmup_epochs"):
        _model(align_warmup_epochs=-1.0)
