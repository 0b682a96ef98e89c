"""The cookbook recipes (docs/adding-a-model.md) pass conformance and run from the CLI; conformance
still rejects plugins that are really broken; fp16 with two optimisers moves each parameter once."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from fixtures.cookbook import RECIPES, RecipeBase, Staged
from torch import nn

from msabench.api import MODELS, ModelOutput, TrainContext
from msabench.api.conformance import (
    check_deterministic,
    check_forward,
    check_loss_falls,
    check_padding_masked,
    check_training_updates_every_parameter,
    make_input_spec,
)

pytestmark = pytest.mark.time_limit(180)


@contextmanager
def registered(*classes):
    """Register fixture plugins for one test only (the global registry stays as the product has it)."""
    for cls in classes:
        MODELS.add(cls.name, cls)
    try:
        yield
    finally:
        for cls in classes:
            MODELS._items.pop(cls.name, None)


@pytest.mark.parametrize("cls", RECIPES, ids=lambda c: c.name)
@pytest.mark.parametrize("kind", ["features", "tokens"])
def test_recipe_passes_conformance(cls, kind):
    spec = make_input_spec(("t", "a", "v"), task="regression", text_kind=kind)
    check_forward(cls, spec)
    check_training_updates_every_parameter(cls, spec)
    check_deterministic(cls, spec)
    check_padding_masked(cls, spec)
    if kind == "features":
        check_loss_falls(cls, spec)


def test_recipes_run_from_the_cli(tmp_path):
    from msabench.cli import main
    from msabench.store.runs import Store

    with registered(*RECIPES):
        args = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--seeds", "1", "--no-mlflow",
                "--out", str(tmp_path), "--set", "train.epochs=3"]
        for cls in RECIPES:
            args += ["--model", cls.name]
        assert main(args) == 0
        runs = [rd for rd in Store(tmp_path).runs() if rd.is_done()]
    assert sorted(rd.read_spec().model for rd in runs) == sorted(c.name for c in RECIPES)


def test_staged_recipe_marks_its_first_stage_provisional_and_no_rule_picks_it(tmp_path):
    from msabench.cli import main
    from msabench.evaluation.selection import select_epoch
    from msabench.store.runs import Store

    with registered(Staged):  # a run of 4 epochs: "first" for epochs 0-1, then "all"
        assert main(["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--seeds", "1",
                     "--no-mlflow", "--out", str(tmp_path), "--model", Staged.name, "--set", "train.epochs=4"]) == 0
    (run,) = Store(tmp_path).runs()
    records = run.read_records()
    assert {r["epoch"] for r in records if r.get("provisional")} == {0, 1}
    assert not any("provisional" in r for r in records if r["epoch"] >= 2)
    chosen = select_epoch(records, "val", task="regression", sources=("synth-mosi",))
    assert chosen >= 2 and run.checkpoint_metadata("val")["epoch"] == str(chosen)


def test_a_run_that_never_completes_its_model_fails_with_a_user_error(tmp_path, capsys):
    from msabench.cli import main

    with registered(Staged):
        assert main(["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--seeds", "1",
                     "--no-mlflow", "--out", str(tmp_path), "--model", Staged.name, "--set", "train.epochs=2"]) == 2
    assert "before the model's last training stage began" in capsys.readouterr().err


def test_scheduled_recipe_changes_its_learning_rates():
    from fixtures.cookbook import Scheduled

    from msabench.api.conformance import random_batch, run_epochs, training_context

    spec = make_input_spec(("t", "a", "v"))
    model = Scheduled(Scheduled.tiny(), spec)
    ctx = training_context(model, spec, lr=1e-2, n_train=10, steps_per_epoch=1, epochs=5)
    base = ctx.lr("encoders")  # warm-up of 0.2 x 5 steps = 1 step: the first step runs at the full lr
    run_epochs(model, ctx, [random_batch(spec, 10)], 2)
    assert ctx.lr("encoders") == pytest.approx(base * 3 / 4)  # then linear decay: (5 - 2) / (5 - 1)
    head_lr = ctx.lr("head")
    for _ in range(3):  # a flat validation loss: plateau halves the head's lr
        ctx.validation_end(lambda metric: 1.0)
    assert ctx.lr("head") == pytest.approx(head_lr * 0.5)


# -- broken plugins are rejected -------------------------------------------------------------------

@dataclass(frozen=True)
class _Cfg:
    hidden: int = 8


class _Broken(RecipeBase):
    config_cls: ClassVar[type] = _Cfg


class NoGradient(_Broken):
    """A parameter no loss reaches."""

    name: ClassVar[str] = "broken_no_gradient"

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.unused = nn.Linear(3, 3)


class NaNOutput(_Broken):
    name: ClassVar[str] = "broken_nan"

    def forward(self, batch):
        out = super().forward(batch)
        return ModelOutput(pred=out.pred * float("nan"))


class LeaksPadding(_Broken):
    """Claims MASKS_PADDING but averages over padded positions too."""

    name: ClassVar[str] = "broken_padding"

    def fuse(self, batch):
        unimodal = {}
        for m in ("a", "v"):
            x, _ = batch.modality(m)
            unimodal[m] = self.encoders.proj[m](x.float().mean(dim=1))
        return torch.stack(list(unimodal.values())).mean(dim=0), unimodal


SPEC_AV = make_input_spec(("a", "v"))


def test_conformance_rejects_a_parameter_without_gradient():
    with pytest.raises(AssertionError, match="never moved.*unused"):
        check_training_updates_every_parameter(NoGradient, SPEC_AV)


def test_conformance_rejects_nan_output():
    with pytest.raises(AssertionError, match="non-finite predictions"):
        check_forward(NaNOutput, SPEC_AV)


def test_conformance_rejects_padding_leaking_into_the_output():
    with pytest.raises(AssertionError, match="padding leaks"):
        check_padding_masked(LeaksPadding, SPEC_AV)


# -- fp16 with two optimisers ----------------------------------------------------------------------

def test_fp16_two_optimisers_each_parameter_moves_by_its_own_gradient_once():
    """After an overflow in the first optimiser, the second still moves by exactly its gradient
    (the CPU GradScaler shares the CUDA one's logic: unscale all, step all, update once)."""
    a = nn.Parameter(torch.tensor([0.0]))
    b = nn.Parameter(torch.tensor([0.0]))
    holder = nn.Module()
    holder.a, holder.b = a, b
    opts = {"first": torch.optim.SGD([a], lr=1.0), "second": torch.optim.SGD([b], lr=1.0)}
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    ctx = TrainContext(model=holder, optimizers=opts, loss_fn=lambda p, y: p, scaler=scaler)
    loss = (1e35 * a).sum() + (3.0 * b).sum()  # a's scaled gradient overflows float32
    ctx.backward(loss)
    assert ctx.step()
    assert float(a) == 0.0  # its step was skipped (inf gradient)
    assert float(b) == pytest.approx(-3.0)  # moved by its own gradient, once
    assert scaler.get_scale() == 2.0**15  # one update for the one optimisation step


class NeedsAligned(RecipeBase):
    """A recipe that declares word-aligned input.

    Deviations: none (a test fixture).
    """

    name: ClassVar[str] = "recipe_needs_aligned"
    NEEDS_ALIGNED: ClassVar[bool] = True


def test_a_model_that_needs_aligned_input_is_refused_at_plan_time_on_unaligned_data(tmp_path, capsys):
    from msabench.cli import main

    args = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--seeds", "1", "--no-mlflow",
            "--out", str(tmp_path), "--model", "recipe_needs_aligned", "--dry-run"]
    with registered(NeedsAligned):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "needs word-aligned sequences" in err and "data.aligned=true" in err
        assert len(err.strip().splitlines()) == 1
        assert main(args + ["--set", "data.aligned=true"]) == 0
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_table_rows_whose_model_needs_aligned_input_read_aligned_data():
    """`run --table` plans a NEEDS_ALIGNED row (ef_lstm in mtmd-table1) on aligned synthetic data."""
    from msabench.plan.sweep import plan_requests
    from msabench.protocols.templates import template_requests

    specs = plan_requests(template_requests("mtmd-table1", seeds=(1,), tiny=True, echo=lambda m: None))
    by_model = {s.model: s for s in specs}
    assert by_model["ef_lstm"].config["data.aligned"] is True
    assert by_model["lf_dnn"].config["data.aligned"] is False
