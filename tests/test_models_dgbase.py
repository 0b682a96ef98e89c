"""The DG baselines on the shared backbone (models/layers/dg_backbone.py): `ridg` and `mad`.

RIDG: the per-class running means of the rationale move with momentum mu, per class, from the
first batch that holds the class; the regulariser is zero when each rationale equals its class's
mean; the means are buffers that checkpoints carry. MAD: its two stages (biased branch, then
general branch), the generalised cross-entropy and L_reg. Both: the paper tables' variants.
"""

from __future__ import annotations

import math

import pytest
import torch

from msabench.api import MODELS, UserError, config_from_flat
from msabench.api.conformance import (
    check_forward,
    check_training_updates_every_parameter,
    make_input_spec,
    random_batch,
    run_epochs,
    training_context,
)
from msabench.core.config import parse_model_spec, resolve_config
from msabench.models.mad import cross_correlation_penalty, generalized_cross_entropy, stage1_epochs

RIDG = MODELS.get("ridg")
MAD = MODELS.get("mad")

pytestmark = pytest.mark.time_limit(60)


def _spec(modalities=("t", "v"), text_kind="features"):
    return make_input_spec(modalities, task="classification", text_kind=text_kind)


def _ridg(momentum=0.25, **kw):
    torch.manual_seed(0)
    cfg = RIDG.config_cls(**{**RIDG.tiny().__dict__, "momentum": momentum, **kw})
    return RIDG(cfg, _spec())


def _rationale(model, z):
    return model.classifier.weight.detach()[None] * z[:, None, :]  # (B, K, D)


# -- RIDG ---------------------------------------------------------------------------------------------


def test_ridg_running_means_move_by_mu_per_class():
    mu = 0.25
    model = _ridg(momentum=mu)
    d = model.backbone.out_dim
    g = torch.Generator().manual_seed(1)
    z1, y1 = torch.randn(6, d, generator=g), torch.tensor([0, 0, 1, 1, 1, 0])  # class 2 absent
    model.rationale_loss(z1, y1)
    r1 = _rationale(model, z1)
    for c in (0, 1):  # the first batch holding a class sets its mean
        torch.testing.assert_close(model.rationale_bank[c], r1[y1 == c].mean(dim=0))
    assert model.bank_initialised.tolist() == [True, True, False]
    assert torch.count_nonzero(model.rationale_bank[2]) == 0

    z2, y2 = torch.randn(5, d, generator=g), torch.tensor([1, 2, 2, 1, 1])  # class 0 absent
    before = model.rationale_bank.clone()
    model.rationale_loss(z2, y2)
    r2 = _rationale(model, z2)
    torch.testing.assert_close(model.rationale_bank[0], before[0])  # untouched
    torch.testing.assert_close(model.rationale_bank[1], (1 - mu) * before[1] + mu * r2[y2 == 1].mean(dim=0))
    torch.testing.assert_close(model.rationale_bank[2], r2[y2 == 2].mean(dim=0))  # first time: set
    assert model.bank_initialised.tolist() == [True, True, True]


def test_ridg_regulariser_is_zero_at_the_class_mean_and_measures_the_distance_otherwise():
    model = _ridg(momentum=0.5)
    d = model.backbone.out_dim
    g = torch.Generator().manual_seed(2)
    proto = torch.randn(3, d, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    z = proto[y]  # every sample of a class has the same evidence: its class mean
    assert float(model.rationale_loss(z, y).detach()) == 0.0
    assert float(model.rationale_loss(z, y).detach()) == 0.0  # the mean stays there: still zero

    # one class-0 sample moved: mean over (samples, K) of the squared distance to the updated mean
    z_moved = z.clone()
    z_moved[0] += torch.randn(d, generator=g)
    bank_before = model.rationale_bank.clone()
    loss = model.rationale_loss(z_moved, y)
    r = _rationale(model, z_moved)
    mean0 = 0.5 * bank_before[0] + 0.5 * r[y == 0].mean(dim=0)
    expected = ((r[y == 0] - mean0) ** 2).sum(dim=-1).mean()
    torch.testing.assert_close(loss, expected)
    assert float(loss.detach()) > 0


def test_ridg_regulariser_gradient_reaches_features_and_classifier_not_the_means():
    model = _ridg()
    z = torch.randn(4, model.backbone.out_dim, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    model.rationale_loss(z.detach(), y)  # set the means
    loss = model.rationale_loss(z + 1.0, y)
    loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert model.classifier.weight.grad is not None and model.classifier.weight.grad.abs().sum() > 0
    assert not model.rationale_bank.requires_grad


def test_ridg_training_updates_the_means_and_checkpoints_carry_them():
    spec = _spec()
    torch.manual_seed(0)
    model = RIDG(RIDG.tiny(), spec)
    batches = [random_batch(spec, batch_size=9, seed=s) for s in (10, 11)]
    ctx = training_context(model, spec, lr=1e-2, n_train=18, steps_per_epoch=2, epochs=1)
    logged = run_epochs(model, ctx, batches, 1)
    assert all(math.isfinite(v["rationale"]) for v in logged)
    assert model.bank_initialised.any() and torch.count_nonzero(model.rationale_bank) > 0
    state = model.state_dict()
    assert {"rationale_bank", "bank_initialised"} <= set(state)
    torch.manual_seed(5)
    clone = RIDG(RIDG.tiny(), spec)
    clone.load_state_dict(state)
    assert torch.equal(clone.rationale_bank, model.rationale_bank)
    assert torch.equal(clone.bank_initialised, model.bank_initialised)


# -- MAD ----------------------------------------------------------------------------------------------


def test_generalized_cross_entropy():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]])
    y = torch.tensor([0, 1])
    q = 0.7
    expected = (0.0 + (1 - 0.5 ** q) / q) / 2
    assert float(generalized_cross_entropy(probs, y, q)) == pytest.approx(expected)
    # as q -> 0 GCE tends to cross-entropy
    assert float(generalized_cross_entropy(probs, y, 1e-4)) == pytest.approx(-math.log(0.5) / 2, rel=1e-3)


def test_mad_l_reg_is_the_mean_squared_cross_correlation():
    g = torch.Generator().manual_seed(3)
    biased = torch.randn(32, 1, generator=g)
    assert float(cross_correlation_penalty(3.0 * biased + 2.0, biased)) == pytest.approx(1.0, abs=1e-5)
    assert float(cross_correlation_penalty(-biased, biased)) == pytest.approx(1.0, abs=1e-5)
    # orthonormal centred columns are uncorrelated: zero; a constant feature counts as uncorrelated
    centred = torch.randn(32, 4, generator=g)
    basis = torch.linalg.qr(centred - centred.mean(dim=0, keepdim=True))[0]  # columns stay centred
    general = torch.cat([basis[:, :2], torch.ones(32, 1)], dim=1)
    assert float(cross_correlation_penalty(general, basis[:, 2:])) == pytest.approx(0.0, abs=1e-6)
    # two general features, one an affine copy of the one biased feature, one another variable
    other = torch.randn(32, 1, generator=g)
    expected = (1.0 + float(torch.corrcoef(torch.cat([other, biased], dim=1).T)[0, 1]) ** 2) / 2
    pair = torch.cat([biased - 1.0, other], dim=1)
    assert float(cross_correlation_penalty(pair, biased)) == pytest.approx(expected, abs=1e-5)


def test_stage1_epochs():
    assert stage1_epochs(0.1, 200) == 20
    assert stage1_epochs(0.1, 8) == 1
    assert stage1_epochs(0.1, 3) == 1
    assert stage1_epochs(0.9, 3) == 2  # one epoch is always left for the general branch
    assert stage1_epochs(0.1, 1) == 0


def _params(model, prefixes):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(prefixes)}


def _moved(before, model):
    now = dict(model.named_parameters())
    return {n for n, p in before.items() if not torch.equal(p, now[n].detach())}


def test_mad_two_stages_train_one_branch_each():
    spec = _spec()
    torch.manual_seed(0)
    model = MAD(MAD.tiny(), spec)
    batches = [random_batch(spec, batch_size=9, seed=s) for s in (20, 21)]
    ctx = training_context(model, spec, lr=1e-2, n_train=18, steps_per_epoch=2, epochs=2)  # stage 1: epoch 0
    biased = ("biased_proj", "biased_heads")
    general = ("general_proj", "general_head")

    before_b, before_g, before_bb = _params(model, biased), _params(model, general), _params(model, ("backbone",))
    logged = run_epochs(model, ctx, batches, 1)
    assert ctx.stage == "biased" and all("biased_gce" in v for v in logged)
    assert _moved(before_b, model) == set(before_b)  # the biased branch trains
    assert not _moved(before_g, model)  # the general branch does not
    assert _moved(before_bb, model)  # the backbone does

    before_b, before_g = _params(model, biased), _params(model, general)
    logged = run_epochs(model, ctx, batches, 1, first_epoch=1)
    assert ctx.stage == "general" and all("reg" in v for v in logged)
    assert not _moved(before_b, model)  # the biased branch is fixed
    assert _moved(before_g, model) == set(before_g)


def test_mad_stage2_regulariser_decorrelates_general_from_biased_features():
    spec = _spec()
    batch = random_batch(spec, batch_size=16, seed=30)

    def trained_penalty(reg_weight):
        torch.manual_seed(0)
        model = MAD(MAD.config_cls(**{**MAD.tiny().__dict__, "reg_weight": reg_weight}), spec)
        ctx = training_context(model, spec, lr=1e-2, n_train=16, steps_per_epoch=1, epochs=30)
        run_epochs(model, ctx, [batch], 30)  # stage 1: epochs 0-2 (share 0.1), then the general branch
        model.eval()
        with torch.no_grad():
            out = model.branches(batch)
            return float(cross_correlation_penalty(out["general"], out["biased"]))

    without, with_reg = trained_penalty(0.0), trained_penalty(10.0)
    assert with_reg < 0.5 * without, (without, with_reg)


def test_mad_stage1_epochs_are_not_complete():
    spec = _spec()
    model = MAD(MAD.tiny(), spec)
    ctx = training_context(model, spec, epochs=20)
    ctx.epoch = 1  # stage 1: the first 2 of 20 epochs, whose general head is untrained
    assert model.epoch_is_complete(ctx) is False
    ctx.epoch = 2
    assert model.epoch_is_complete(ctx) is True


# -- both ---------------------------------------------------------------------------------------------


def test_variants_match_the_paper_table_rows():
    from msabench.protocols.templates import TEMPLATES

    seen = set()
    for table in ("s2lif-table1", "s2lif-table2"):
        for row in TEMPLATES.get(table).rows:
            if not row.model or not row.model.startswith(("ridg", "mad")):
                continue
            spec = parse_model_spec(row.model)
            cls = MODELS.get(spec.name)
            flat = resolve_config(cls, spec, "mosei")
            assert set(flat["model.branches"]) == set("".join(row.modalities)), row.model
            if "t" in row.modalities:
                assert flat["text.frozen"] == row.model.endswith("frozen"), row.model
            assert flat["text.encoder"] == "google/electra-base-discriminator"
            seen.add(row.model)
    assert seen == {f"{m}@{v}" for m in ("ridg", "mad") for v in ("v", "t-frozen", "t-finetune", "m-frozen",
                                                                    "m-finetune")}
    base = resolve_config(RIDG, parse_model_spec("ridg"), "mosi")
    assert (base["model.branches"], base["text.frozen"]) == ("all", True)  # plain ridg: M-Frozen


def test_paper_training_settings():
    for cls in (RIDG, MAD):
        flat = resolve_config(cls, parse_model_spec(cls.name), "meld")
        assert (flat["train.optimizer"], flat["train.lr"], flat["train.batch_size"], flat["train.epochs"]) == (
            "adam", 7e-5, 16, 200)


@pytest.mark.parametrize("cls", [RIDG, MAD], ids=["ridg", "mad"])
def test_branches_choose_the_modalities(cls):
    spec = _spec(("t", "v"))
    for variant, has_text, has_vision in (("v", False, True), ("t-frozen", True, False), ("m-frozen", True, True)):
        flat = resolve_config(cls, parse_model_spec(f"{cls.name}@{variant}"), "mosi", tiny=True)
        model = cls(config_from_flat(cls.config_cls, flat), spec)
        names = {n.split(".")[1] for n, _ in model.named_parameters() if n.startswith("backbone.")}
        assert ("text_mlp" in names) == has_text and ("frame_mlp" in names) == has_vision, variant
        assert model.backbone.out_dim == flat["model.hidden"] * (has_text + has_vision)
    cfg = config_from_flat(cls.config_cls, resolve_config(cls, parse_model_spec(f"{cls.name}@t-frozen"), "mosi",
                                                          tiny=True))
    with pytest.raises(UserError, match="--modalities t"):
        cls(cfg, _spec(("v",)))
    with pytest.raises(UserError, match="model.branches"):
        cls(config_from_flat(cls.config_cls, {"model.branches": "x"}), spec)


@pytest.mark.parametrize("cls", [RIDG, MAD], ids=["ridg", "mad"])
def test_fine_tuned_tiny_bert_trains(cls):
    spec = _spec(("t", "v"), text_kind="encoded")  # a fine-tuned tiny-bert inside the model
    check_forward(cls, spec)
    check_training_updates_every_parameter(cls, spec)
    model = cls(cls.tiny(), spec)
    groups = model.param_groups({"train.text_lr": 7e-5})["main"]
    assert [g.get("name") for g in groups] == [None, "text_encoder"]
