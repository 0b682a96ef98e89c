"""`mfn` and `graph_mfn`: the vectorised LSTM system and memory against a step-by-step loop in
MMSA's form, parameter counts at MOSI shapes, and each model-specific switch."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

from msabench.api import MODELS, TrainContext, task_loss_fn
from msabench.api.conformance import make_input_spec, random_batch
from msabench.api.context import build_optimizers
from msabench.models.layers.mfn_memory import ModalityLSTMs

ALIGNED = {"t": 6, "a": 6, "v": 6}
MOSI_DIMS = {"t": 768, "a": 5, "v": 20}
MOSI_LENS = {"t": 50, "a": 375, "v": 500}


def _aligned_full_batch(spec, seed=0, batch_size=5):
    """Word-aligned, no padding: the setting in which MMSA's loop and ours must agree."""
    batch = random_batch(spec, batch_size=batch_size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    full = dataclasses.replace(batch)
    for attr, mask_attr in (("text_feats", "text_mask"), ("audio", "audio_mask"), ("vision", "vision_mask")):
        x = getattr(batch, attr)
        setattr(full, attr, torch.randn(x.shape, generator=g))
        setattr(full, mask_attr, torch.ones(x.shape[:2], dtype=torch.bool))
    return full


def _cells(model):
    """The model's LSTM cells, called through nn.LSTMCell.forward (PyTorch's kernel) below."""
    return dict(model.lstms.cells.items())


def _mlp(fc1, fc2, x):
    return fc2(F.relu(fc1(x)))


def _memory_step(memory, fused, mem):
    """MMSA's gated memory update at one step (eval: no dropout)."""
    proposal = torch.tanh(_mlp(memory.proposal_fc1, memory.proposal_fc2, fused))
    both = torch.cat([fused, mem], dim=1)
    gamma1 = torch.sigmoid(_mlp(memory.gamma1_fc1, memory.gamma1_fc2, both))
    gamma2 = torch.sigmoid(_mlp(memory.gamma2_fc1, memory.gamma2_fc2, both))
    return gamma1 * mem + gamma2 * proposal


def _reference(model, batch, fuse):
    """MMSA's forward, step by step with LSTMCells; `fuse(prev_h, prev_c, new_h, new_c)` is the fusion block."""
    seqs, steps = model.inputs(batch)
    order = model.lstms.order
    cells = _cells(model)
    b = len(batch)
    h = {m: torch.zeros(b, cells[m].hidden_size) for m in order}
    c = {m: torch.zeros(b, cells[m].hidden_size) for m in order}
    mem = torch.zeros(b, model.cfg.mem_dim)
    for t in range(steps):
        new = {m: cells[m](seqs[m][0][:, t].float(), (h[m], c[m])) for m in order}
        fused = fuse(h, c, {m: new[m][0] for m in order}, {m: new[m][1] for m in order})
        mem = _memory_step(model.memory, fused, mem)
        h = {m: new[m][0] for m in order}
        c = {m: new[m][1] for m in order}
    out = model.head(torch.cat([h[m] for m in order] + [mem], dim=1))
    return out.squeeze(-1)


def _mfn_fusion(model):
    order = model.lstms.order

    def fuse(prev_h, prev_c, new_h, new_c):
        cstar = torch.cat([prev_c[m] for m in order] + [new_c[m] for m in order], dim=1)
        att = model.attention
        return torch.softmax(_mlp(att.att1_fc1, att.att1_fc2, cstar), dim=1) * cstar
    return fuse


# MMSA's DFG over three modalities: vertex -> the vertices it reads, efficacies in this order
DFG_READS = [((0, 1), [(0,), (1,)]), ((0, 2), [(0,), (2,)]), ((1, 2), [(1,), (2,)]),
             ((0, 1, 2), [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]),
             ((), [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)])]


def _graph_fusion(model):
    order = model.lstms.order
    graph = model.graph

    def fuse(prev_h, prev_c, new_h, new_c):
        singles = [F.relu(model.transforms[m](torch.cat([prev_h[m], new_h[m]], dim=1))) for m in order]
        eff = graph.efficacy_model(torch.cat(singles, dim=1))
        assert eff.shape[1] == 19
        vertex = {(i,): s for i, s in enumerate(singles)}
        k = 0
        for key, reads in DFG_READS:
            x = torch.cat([vertex[r] * eff[:, k + j : k + j + 1] for j, r in enumerate(reads)], dim=1)
            k += len(reads)
            net = graph.t_network if key == () else graph.vertex_nets["_".join(map(str, key))]
            vertex[key] = net(x)
        return vertex[()]
    return fuse


@pytest.mark.parametrize("name,fusion", [("mfn", _mfn_fusion), ("graph_mfn", _graph_fusion)])
def test_matches_step_by_step_mmsa_loop_on_aligned_full_length_input(name, fusion):
    cls = MODELS.get(name)
    spec = make_input_spec(("t", "a", "v"), max_lens=ALIGNED)
    torch.manual_seed(0)
    model = cls(cls.tiny(), spec).eval()
    batch = _aligned_full_batch(spec)
    with torch.no_grad():
        ours = model(batch).pred
        ref = _reference(model, batch, fusion(model))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_lstm_system_holds_the_last_real_state_over_padding():
    torch.manual_seed(1)
    lstms = ModalityLSTMs({"a": 3}, {"a": 5})
    cell = lstms.cells["a"]
    x = torch.randn(4, 7, 3)
    lengths = torch.tensor([7, 1, 4, 2])
    mask = torch.arange(7)[None, :] < lengths[:, None]
    with torch.no_grad():
        trace = lstms({"a": (x, mask)}, steps=9)["a"]  # a longer shared axis: held to the end
        for i, n in enumerate(lengths.tolist()):
            h = c = torch.zeros(1, 5)
            for t in range(9):
                if t < n:
                    h, c = cell(x[i : i + 1, t], (h, c))
                torch.testing.assert_close(trace.h[i, t], h[0], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(trace.c[i, t], c[0], rtol=1e-5, atol=1e-6)


def _count(name, **cfg):
    cls = MODELS.get(name)
    spec = make_input_spec(("t", "a", "v"), dims=MOSI_DIMS, max_lens=MOSI_LENS)
    with torch.device("meta"):
        model = cls(dataclasses.replace(cls.config_cls(), **cfg), spec)
    return (sum(p.numel() for p in model.parameters()),
            sum(p.numel() for p in model.parameters() if p.requires_grad))


def test_parameter_counts_at_mosi_shapes():
    # MMSA 2.2.1, MOSI config, feature dims (768, 5, 20), regression: MFN 2,172,657 parameters;
    # Graph_MFN 2,110,624 registered + 208,656 in its unregistered vertex networks.
    assert _count("mfn") == (2_172_657, 2_172_657)
    assert _count("graph_mfn") == (2_110_624 + 208_656, 2_110_624 + 208_656)
    assert _count("graph_mfn", freeze_vertex_nets=True) == (2_110_624 + 208_656, 2_110_624)


def test_freeze_vertex_nets_keeps_the_multimodal_vertices_at_their_initial_values():
    cls = MODELS.get("graph_mfn")
    spec = make_input_spec(("t", "a", "v"), max_lens=ALIGNED)
    for freeze in (False, True):
        torch.manual_seed(0)
        model = cls(dataclasses.replace(cls.tiny(), freeze_vertex_nets=freeze), spec)
        before = {k: v.clone() for k, v in model.graph.vertex_nets.state_dict().items()}
        grouped = {id(p) for groups in model.param_groups({}).values() for g in groups for p in g["params"]}
        in_groups = [id(p) in grouped for p in model.graph.vertex_nets.parameters()]
        ctx = TrainContext(model=model, optimizers=build_optimizers(model, {"train.lr": 1e-2}),
                           loss_fn=task_loss_fn("regression"))
        model.train()
        for step in range(3):
            model.training_step(_aligned_full_batch(spec, seed=step), ctx)
        after = model.graph.vertex_nets.state_dict()
        changed = [not torch.equal(before[k], after[k]) for k in before]
        assert len(changed) == 16  # 3 bimodal + 1 trimodal vertex, 2 Linear layers each, weight and bias
        if freeze:
            assert not any(in_groups) and not any(changed)
        else:
            assert all(in_groups) and all(changed)


def test_average_audio_vision_sees_only_the_time_mean():
    cls = MODELS.get("mfn")
    spec = make_input_spec(("t", "a", "v"), max_lens=ALIGNED)
    batch = _aligned_full_batch(spec, seed=3)
    shuffled = dataclasses.replace(batch, audio=batch.audio.flip(1), vision=batch.vision.roll(2, dims=1))
    for average in (False, True):
        torch.manual_seed(0)
        model = cls(dataclasses.replace(cls.tiny(), average_audio_vision=average), spec).eval()
        with torch.no_grad():
            same = torch.allclose(model(batch).pred, model(shuffled).pred, atol=1e-6)
        assert same == average


def test_graph_mfn_efficacies_and_any_modality_subset():
    cls = MODELS.get("graph_mfn")
    for modalities, n_efficacies in ((("t", "a", "v"), 19), (("t", "v"), 5), (("a",), 1)):
        spec = make_input_spec(modalities, max_lens=ALIGNED)
        model = cls(cls.tiny(), spec).eval()
        with torch.no_grad():
            out = model(random_batch(spec, batch_size=3, seed=0))
        assert out.features["efficacies"].shape == (3, n_efficacies)


def test_mfn_declares_aligned_input():
    assert MODELS.get("mfn").NEEDS_ALIGNED and MODELS.get("graph_mfn").NEEDS_ALIGNED
