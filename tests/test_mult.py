"""`mult` (Multimodal Transformer) and the shared blocks of `msabench.models.layers.transformer`."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from msabench.api import MODELS, config_from_flat
from msabench.api.conformance import make_input_spec, random_batch
from msabench.api.context import TrainContext
from msabench.core.config import ModelSpec, resolve_config
from msabench.models.layers.transformer import (
    CrossModalEncoder,
    MultiheadAttention,
    attention_allowed,
    real_positions,
    sinusoidal_embedding,
)

MULT = MODELS.get("mult")

# MMSA 2.2.1 MULT built with config_regression.json "mult"/"mosi", feature_dims [768, 5, 20],
# regression, use_bert false: sum of p.numel() over model.parameters().
MMSA_MOSI_PARAMS = 2_571_551


def _mosi_spec(task="regression"):
    return make_input_spec(("t", "a", "v"), task=task, dims={"t": 768, "a": 5, "v": 20},
                           max_lens={"t": 50, "a": 375, "v": 500})


def test_parameter_count_at_mosi_shapes_equals_mmsa():
    cfg = config_from_flat(MULT.config_cls, resolve_config(MULT, ModelSpec("mult"), "mosi"))
    with torch.device("meta"):
        model = MULT(cfg, _mosi_spec())
    assert sum(p.numel() for p in model.parameters()) == MMSA_MOSI_PARAMS
    parts = {name: sum(p.numel() for p in mod.parameters()) for name, mod in model.named_children()}
    assert parts["proj"] == 768 * 50 * 5 + 5 * 50 * 5 + 20 * 50 * 5  # bias-free Conv1d, kernel 5
    assert parts["cross"] == 6 * 122_700 and parts["memory"] == 3 * 485_400


def test_variants_set_text_frozen():
    assert resolve_config(MULT, ModelSpec("mult", "frozen"), "mosi")["text.frozen"] is True
    assert resolve_config(MULT, ModelSpec("mult", "finetune"), "mosi")["text.frozen"] is False


def test_mmsa_plateau_scheduler_per_family():
    """MMSA's ReduceLROnPlateau(factor 0.1) with its per-dataset "patience" (5 / 20 / 10)."""
    for family, patience in (("mosi", 5), ("mosei", 20), ("sims", 10)):
        flat = resolve_config(MULT, ModelSpec("mult"), family)
        assert flat["train.scheduler"] == "plateau" and flat["train.scheduler_factor"] == 0.1
        assert flat["train.scheduler_patience"] == patience


def test_sinusoids_match_the_tensor2tensor_form_and_zero_padding():
    pos = torch.tensor([0, 1, 3])
    emb = sinusoidal_embedding(pos, 7)  # odd: one trailing zero channel
    assert emb.shape == (3, 7)
    assert torch.equal(emb[0], torch.zeros(7)) and torch.equal(emb[:, 6], torch.zeros(3))
    freqs = torch.exp(torch.arange(3.0) * -(torch.log(torch.tensor(10000.0)) / 2))
    torch.testing.assert_close(emb[2, :3], torch.sin(3 * freqs))
    torch.testing.assert_close(emb[2, 3:6], torch.cos(3 * freqs))
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert real_positions(mask).tolist() == [[1, 2, 0], [1, 0, 0]]


def test_future_mask_uses_real_lengths():
    q = torch.tensor([[True, True, True, False]])  # 3 real queries
    k = torch.tensor([[True, True, True, True, True, False]])  # 5 real keys: offset 2
    allowed = attention_allowed(q, k, future_mask=True)[0]
    assert allowed[0].tolist() == [True, True, True, False, False, False]
    assert allowed[2].tolist() == [True] * 5 + [False]  # the last real query sees every real key
    assert attention_allowed(q, k, future_mask=False)[0, 0].tolist() == [True] * 5 + [False]


def _encoder(**kw):
    torch.manual_seed(0)
    return CrossModalEncoder(8, 2, 2, **kw).eval()


def test_encoder_is_causal_with_future_mask_only():
    x, mask = torch.randn(1, 6, 8), torch.ones(1, 6, dtype=torch.bool)
    changed = x.clone()
    changed[0, 4:] = torch.randn(2, 8)  # not a constant shift, which LayerNorm would remove
    for future, same_prefix in ((True, True), (False, False)):
        enc = _encoder(future_mask=future)
        with torch.no_grad():
            a, b = enc(x, mask).hidden, enc(changed, mask).hidden
        assert torch.allclose(a[0, :4], b[0, :4], atol=1e-6) is same_prefix


def test_positional_embedding_switch():
    """Without positions (and without the future mask) self-attention is permutation-equivariant."""
    x, mask = torch.randn(1, 5, 8), torch.ones(1, 5, dtype=torch.bool)
    perm = torch.tensor([3, 0, 4, 1, 2])
    for positional, equivariant in ((False, True), (True, False)):
        enc = _encoder(positional=positional)
        with torch.no_grad():
            a, b = enc(x, mask).hidden[0, perm], enc(x[:, perm], mask).hidden[0]
        assert torch.allclose(a, b, atol=1e-5) is equivariant


def test_padded_sample_equals_the_sample_alone():
    """Padding and batch composition never change a sample's result (real-length masks)."""
    enc = _encoder(future_mask=True)
    x, src = torch.randn(2, 7, 8), torch.randn(2, 9, 8)
    xm = torch.tensor([[True] * 4 + [False] * 3, [True] * 7])
    sm = torch.tensor([[True] * 6 + [False] * 3, [True] * 9])
    with torch.no_grad():
        batched = enc(x, xm, src, sm).hidden[0, :4]
        alone = enc(x[:1, :4], xm[:1, :4], src[:1, :6], sm[:1, :6]).hidden[0]
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_traces_expose_queries_keys_and_masked_probabilities():
    enc = _encoder()
    x, src = torch.randn(2, 5, 8), torch.randn(2, 6, 8)
    xm = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    sm = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    with torch.no_grad():
        out = enc(x, xm, src, sm, return_traces=True)
    assert len(out.traces) == 2
    for trace in out.traces:
        assert trace.queries.shape == (2, 5, 8) and trace.keys.shape == (2, 6, 8)
        assert trace.probs.shape == (2, 2, 5, 6)
        assert torch.equal(trace.probs[1, :, :, 4:], torch.zeros(2, 5, 2))  # padded keys
        torch.testing.assert_close(trace.probs.sum(-1), torch.ones(2, 2, 5))
    assert enc(x, xm, src, sm).traces is None


def test_fused_attention_equals_the_explicit_one_with_and_without_visible_keys():
    """need_probs=False takes scaled_dot_product_attention: the same outputs and gradients, and a
    query that sees no key gets zero output there too (no NaN)."""
    torch.manual_seed(0)
    attention = MultiheadAttention(8, 2)
    q, kv = torch.randn(3, 5, 8, requires_grad=True), torch.randn(3, 6, 8, requires_grad=True)
    allowed = torch.rand(3, 5, 6) > 0.4
    allowed[0, 2] = False  # a query with no visible key
    outputs = []
    for need_probs in (True, False):
        out, _, _, probs = attention(q, kv, kv, allowed, need_probs=need_probs)
        assert (probs is None) != need_probs
        grads = torch.autograd.grad(out.square().sum(), (q, kv, attention.q_proj.weight))
        outputs.append((out, *grads))
    for explicit, fused in zip(*outputs):
        torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)
    assert torch.equal(outputs[1][0][0, 2], attention.out_proj.bias.detach())  # zero attention, then out_proj


def test_model_structure_follows_the_reference():
    cfg = dataclasses.replace(MULT.tiny(), cross_layers=2, memory_min_layers=3, attn_dropout=0.3,
                              attn_dropout_a=0.2, attn_dropout_v=0.0)
    model = MULT(cfg, make_input_spec(("t", "a", "v")))
    assert sorted(model.cross) == ["a_with_t", "a_with_v", "t_with_a", "t_with_v", "v_with_a", "v_with_t"]
    # attention dropout follows the source modality (MMSA/yaohungt get_network)
    assert model.cross["t_with_a"].layers[0].attention.attn_dropout.p == 0.2
    assert model.cross["a_with_v"].layers[0].attention.attn_dropout.p == 0.0
    assert model.cross["v_with_t"].layers[0].attention.attn_dropout.p == 0.3
    for memory in model.memory.values():
        assert len(memory.layers) == 3 and memory.embed_dim == 2 * cfg.embed_dim
    assert model.out_layer.in_features == 6 * cfg.embed_dim


@pytest.mark.parametrize("modalities,memory_dims", [(("t", "v"), {"t": 8, "v": 8}), (("a",), {"a": 8})])
def test_modality_subsets(modalities, memory_dims):
    spec = make_input_spec(modalities)
    model = MULT(MULT.tiny(), spec).eval()
    assert {m: enc.embed_dim for m, enc in model.memory.items()} == memory_dims
    assert len(model.cross) == len(modalities) * (len(modalities) - 1)
    with torch.no_grad():
        out = model(random_batch(spec, batch_size=3, seed=0))
    assert out.features["fusion"].shape == (3, sum(memory_dims.values()))


def test_temporal_conv_keeps_the_valid_steps():
    spec = make_input_spec(("t", "a", "v"))
    model = MULT(dataclasses.replace(MULT.tiny(), conv_kernel_v=3), spec).eval()
    batch = random_batch(spec, batch_size=4, seed=1)
    with torch.no_grad():
        projected, masks = model.project(batch)
    lengths = batch.vision_mask.sum(1)
    assert masks["v"].sum(1).tolist() == (lengths - 2).clamp_min(1).tolist()
    assert projected["v"].shape[1] == batch.vision.shape[1] - 2


def test_encode_returns_every_cross_modal_trace():
    spec = make_input_spec(("t", "a", "v"))
    model = MULT(MULT.tiny(), spec).eval()
    with torch.no_grad():
        enc = model.encode(random_batch(spec, batch_size=2, seed=2), return_traces=True)
    assert set(enc.cross) == {"t_with_a", "t_with_v", "a_with_t", "a_with_v", "v_with_t", "v_with_a"}
    assert all(len(out.traces) == MULT.tiny().cross_layers for out in enc.cross.values())
    assert set(enc.projected) == {"t", "a", "v"}


class _Ctx:
    def __init__(self, grad_accum):
        self.grad_accum, self.scaler, self.steps = grad_accum, None, 0
        self.loss_fn = lambda pred, y: torch.nn.functional.l1_loss(pred, y) * 1e4  # large gradients

    def autocast(self):
        return contextlib.nullcontext()

    def backward(self, loss):
        (loss / self.grad_accum).backward()

    def step(self):
        self.steps += 1

    clip_accumulated_values = TrainContext.clip_accumulated_values  # the one under test


@pytest.mark.parametrize("clip,grad_accum", [(0.6, 1), (0.6, 8), (0.0, 1)])
def test_gradient_value_clip(clip, grad_accum):
    spec = make_input_spec(("t", "a", "v"))
    torch.manual_seed(0)
    model = MULT(dataclasses.replace(MULT.tiny(), grad_clip_value=clip), spec).train()
    ctx = _Ctx(grad_accum)
    model.training_step(random_batch(spec, batch_size=5, seed=3), ctx)
    largest = max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None)
    if clip:
        assert largest == pytest.approx(clip / grad_accum)  # MMSA clips the un-averaged sum at 0.6
    else:
        assert largest > 0.6
    assert ctx.steps == 1
