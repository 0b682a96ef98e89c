"""Model-specific properties of `mfm` and `mctn`: parameter counts at MOSI shapes next to MMSA
2.2.1's, the loss-weight switches, and MCTN's text-only inference."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from msabench.api import InputSpec
from msabench.api.conformance import make_input_spec, random_batch
from msabench.models.mctn import MCTN, MCTNConfig
from msabench.models.mfm import MFM, MFMConfig

MOSI = InputSpec(modalities=("t", "a", "v"), dims={"t": 768, "a": 5, "v": 20},
                 max_lens={"t": 50, "a": 375, "v": 500})


def make_aligned_spec(modalities=("t", "a", "v")):
    return make_input_spec(modalities, aligned=True)


def _count(cls, cfg) -> int:
    with torch.device("meta"):
        model = cls(cfg, MOSI)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_parameter_counts_at_mosi_shapes():
    # MMSA 2.2.1 (MFM(args) / MCTN(args) with config_regression.json "mosi", feature_dims
    # (768, 5, 20)): MFM 1,416,123, of which MFN's unused output head (out_fc1 352x128 + 128,
    # out_fc2 128x1 + 1) is 45,313; MCTN 763,778.
    assert _count(MFM, MFMConfig()) == 1_416_123 - 45_313
    assert _count(MCTN, MCTNConfig()) == 763_778


def _aux(model, batch, seed=0):
    torch.manual_seed(seed)
    model.train()
    return model(batch).aux_losses


def _build(cls, cfg, spec, seed=0):
    torch.manual_seed(seed)
    return cls(cfg, spec)


# -- mfm ----------------------------------------------------------------------------------------

def test_mfm_losses_and_their_weights():
    spec = make_aligned_spec()
    batch = random_batch(spec, batch_size=6, seed=1)
    cfg = MFM.tiny()
    aux = _aux(_build(MFM, cfg, spec), batch)
    assert set(aux) == {"recon_t", "recon_a", "recon_v", "mmd"}
    doubled = dataclasses.replace(cfg, recon_weight_audio=2 * cfg.recon_weight_audio, mmd_weight=2 * cfg.mmd_weight)
    aux2 = _aux(_build(MFM, doubled, spec), batch)
    torch.testing.assert_close(aux2["recon_a"], 2 * aux["recon_a"])
    torch.testing.assert_close(aux2["mmd"], 2 * aux["mmd"])
    torch.testing.assert_close(aux2["recon_t"], aux["recon_t"])


def test_mfm_zero_weights_remove_losses_and_decoders():
    spec = make_aligned_spec()
    batch = random_batch(spec, batch_size=6, seed=1)
    cfg = dataclasses.replace(MFM.tiny(), recon_weight_audio=0.0, mmd_weight=0.0)
    model = _build(MFM, cfg, spec)
    assert set(model.decoders) == set(model.factor_nets) == {"t", "v"}
    assert set(_aux(model, batch)) == {"recon_t", "recon_v"}
    model.eval()
    assert model(batch).aux_losses == {}


def test_mfm_reconstruction_ignores_padding_and_needs_aligned():
    for cls in (MFM, MCTN):
        assert cls.NEEDS_ALIGNED
        assert "data.aligned=true" in cls.check_inputs(make_input_spec())
    spec = make_aligned_spec()
    batch = random_batch(spec, batch_size=6, seed=2)
    noisy = dataclasses.replace(batch, audio=torch.where(batch.audio_mask[..., None], batch.audio,
                                                        100 * torch.randn_like(batch.audio)))
    model = _build(MFM, dataclasses.replace(MFM.tiny(), mmd_weight=0.0), spec)
    torch.testing.assert_close(_aux(model, noisy)["recon_a"], _aux(model, batch)["recon_a"])


# -- mctn ---------------------------------------------------------------------------------------

def test_mctn_infers_from_text_only():
    spec = make_aligned_spec()
    batch = random_batch(spec, batch_size=5, seed=3)
    model = _build(MCTN, MCTN.tiny(), spec).eval()
    other = dataclasses.replace(batch, audio=torch.randn_like(batch.audio), vision=torch.randn_like(batch.vision))
    with torch.no_grad():
        torch.testing.assert_close(model(other).pred, model(batch).pred)
        assert model(batch).aux_losses == {}


def test_mctn_hierarchy_and_loss_switches():
    spec = make_aligned_spec()
    batch = random_batch(spec, batch_size=5, seed=4)
    cfg = MCTN.tiny()
    assert set(_aux(_build(MCTN, cfg, spec), batch)) == {"translate_v", "cycle_t", "translate_a"}
    no_cycle = _build(MCTN, dataclasses.replace(cfg, cycle_weight=0.0), spec)
    assert set(_aux(no_cycle, batch)) == {"translate_v", "translate_a"}
    no_level1 = _build(MCTN, dataclasses.replace(cfg, cycle_weight=0.0, translation_weight=0.0), spec)
    assert no_level1.level1.decoder is None
    assert set(_aux(no_level1, batch)) == {"translate_a"}
    no_level2 = _build(MCTN, dataclasses.replace(cfg, translation2_weight=0.0), spec)
    assert no_level2.level2.decoder is None and set(_aux(no_level2, batch)) == {"translate_v", "cycle_t"}
    # weights scale their loss
    base, doubled = _aux(_build(MCTN, cfg, spec), batch), _aux(
        _build(MCTN, dataclasses.replace(cfg, cycle_weight=0.2), spec), batch)
    torch.testing.assert_close(doubled["cycle_t"], 2 * base["cycle_t"])
    torch.testing.assert_close(doubled["translate_v"], base["translate_v"])


@pytest.mark.parametrize("modalities,keys", [(("t", "a"), {"translate_a", "cycle_t"}), (("t",), set())])
def test_mctn_subsets(modalities, keys):
    spec = make_aligned_spec(modalities)
    model = _build(MCTN, MCTN.tiny(), spec)
    assert model.level2 is None
    assert set(_aux(model, random_batch(spec, batch_size=4, seed=5))) == keys
    assert "needs modalities t" in MCTN.check_inputs(make_aligned_spec(("a", "v")))  # text is the source


def test_mctn_decoder_is_causal_under_teacher_forcing():
    """Frame k of the translation depends on target frames before k only."""
    spec = make_aligned_spec()
    model = _build(MCTN, MCTN.tiny(), spec).eval()
    decoder = model.level1.decoder
    g = torch.Generator().manual_seed(0)
    joint, mask = torch.randn(3, 7, 8, generator=g), torch.ones(3, 7, dtype=torch.bool)
    s, target = torch.randn(3, 8, generator=g), torch.randn(3, 6, model.width, generator=g)
    changed = target.clone()
    changed[:, 3] += 1.0
    with torch.no_grad():
        a, b = decoder(joint, mask, s, target), decoder(joint, mask, s, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])
