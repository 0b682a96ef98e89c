"""Conformance suite over every registered model (docs/architecture.md §6 and §11).

Parametrised from `MODELS.names()`: adding a plugin (one file + one import line) needs no edit
here. The checks themselves live in `msabench.api.conformance` (a plugin author runs the same
ones). They drive `training_step` as the loop does, and read capability flags (MASKS_PADDING,
HAS_TRAINABLE_PARAMS, CONFORMANCE_EPOCHS), never a model's name. Every test has a time limit
(`time_limit` marker, tests/conftest.py). The default run (`pytest`) checks each model on its
first task with both text kinds and one loss-falls case; the full task x text-kind matrix is
marked `conformance_matrix` and runs with `pytest -m conformance_matrix` (kept out of the default
suite so that the suite's time grows by a few seconds per model, not by the matrix).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import itertools
import json
import math
import re

import pytest
import torch

from msabench.api import MODELS, ModelOutput, MSAModel, config_from_flat
from msabench.api.conformance import (
    check_deterministic,
    check_forward,
    check_loss_falls,
    check_padding_masked,
    check_training_updates_every_parameter,
    make_input_spec,
    random_batch,
)
from msabench.api.context import TrainContext, build_optimizers, task_loss_fn
from msabench.core.types import MODALITIES, TASKS

TEXT_KINDS = ("features", "tokens")
FAMILIES = {"mosi", "mosei", "sims", "meld", "iemocap"}
TRAIN_KEYS_REQUIRED = ("train.lr", "train.batch_size", "train.epochs", "train.patience")

pytestmark = pytest.mark.time_limit(120)


def _cases(trainable_only: bool = False, full: bool = False):
    for name in MODELS.names():
        cls = MODELS.get(name)
        if trainable_only and not cls.HAS_TRAINABLE_PARAMS:
            continue
        for i, task in enumerate(cls.TASKS):
            for kind in TEXT_KINDS:
                if kind == "tokens" and "t" not in cls.SUPPORTED_MODALITIES:
                    continue
                quick = i == 0
                if quick or full:
                    marks = () if quick else (pytest.mark.slow, pytest.mark.conformance_matrix)
                    yield pytest.param(name, task, kind, id=f"{name}-{task}-{kind}", marks=marks)


CASES = list(_cases(full=True))
TRAINABLE_CASES = list(_cases(trainable_only=True, full=True))
NAMES = MODELS.names()


def _spec(cls, task, kind, modalities=None):
    modalities = tuple(m for m in MODALITIES if m in (modalities or cls.SUPPORTED_MODALITIES))
    spec = make_input_spec(modalities, task=task, text_kind=kind, aligned=cls.NEEDS_ALIGNED)
    assert cls.check_inputs(spec) is None, cls.check_inputs(spec)
    return spec


def _build(cls, spec, seed=0) -> MSAModel:
    torch.manual_seed(seed)
    return cls(cls.tiny(), spec)


def _expected_shape(spec, b):
    return (b,) if spec.task == "regression" else (b, spec.n_outputs)


# -- per model x task x text kind ---------------------------------------------------------------

@pytest.mark.parametrize("name,task,kind", CASES)
def test_output_shape_and_finite(name, task, kind):
    check_forward(MODELS.get(name), _spec(MODELS.get(name), task, kind))


@pytest.mark.parametrize("name,task,kind", CASES)
def test_training_step_moves_every_trainable_parameter(name, task, kind):
    check_training_updates_every_parameter(MODELS.get(name), _spec(MODELS.get(name), task, kind))


@pytest.mark.parametrize("name,task,kind", CASES)
def test_same_seed_same_weights_and_deterministic_eval(name, task, kind):
    check_deterministic(MODELS.get(name), _spec(MODELS.get(name), task, kind))


@pytest.mark.parametrize("name,task,kind", CASES)
def test_padding_is_masked(name, task, kind):
    cls = MODELS.get(name)
    if not cls.MASKS_PADDING:
        pytest.skip(f"{name} declares MASKS_PADDING = False (its docstring says why)")
    check_padding_masked(cls, _spec(cls, task, kind))


def _loss_cases():
    for p in TRAINABLE_CASES:
        name, task, kind = p.values
        cls = MODELS.get(name)
        quick = task == cls.TASKS[0] and kind == "features"
        yield pytest.param(name, task, kind, id=p.id,
                           marks=() if quick else (pytest.mark.slow, pytest.mark.conformance_matrix))


@pytest.mark.parametrize("name,task,kind", list(_loss_cases()))
def test_tiny_loss_falls(name, task, kind):
    check_loss_falls(MODELS.get(name), _spec(MODELS.get(name), task, kind))


@pytest.mark.parametrize("name", NAMES)
def test_any_supported_modality_subset(name):
    cls = MODELS.get(name)
    subsets = [s for r in (1, 2, 3) for s in itertools.combinations(MODALITIES, r)]
    ran = 0
    for subset in subsets:
        spec = make_input_spec(subset, task=cls.TASKS[0], aligned=cls.NEEDS_ALIGNED)
        if cls.check_inputs(spec) is not None:
            assert any(m not in cls.SUPPORTED_MODALITIES for m in subset) or any(
                m not in subset for m in cls.REQUIRED_MODALITIES)
            continue
        model = _build(cls, spec).eval()
        with torch.no_grad():
            out = model(random_batch(spec, batch_size=3, seed=7))
        assert isinstance(out, ModelOutput)
        assert tuple(out.pred.shape) == _expected_shape(spec, 3)
        assert torch.isfinite(out.pred).all()
        ran += 1
    assert ran


# -- per model ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips_through_json(name):
    cls = MODELS.get(name)
    cfg_cls = cls.config_cls
    assert dataclasses.is_dataclass(cfg_cls) and cfg_cls.__dataclass_params__.frozen
    for cfg in (cfg_cls(), cls.tiny()):
        assert isinstance(cfg, cfg_cls)
        text = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
        assert cfg_cls(**json.loads(text)) == cfg
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    for family, preset in cls.PRESETS.items():
        cfg = config_from_flat(cfg_cls, preset)
        for key, value in preset.items():
            if key.startswith("model."):
                assert key[len("model."):] in fields, f"{name} preset {family}: unknown {key}"
                assert getattr(cfg, key[len("model."):]) == value
        assert cfg_cls(**json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg


@pytest.mark.parametrize("name", NAMES)
def test_defaults_and_presets_resolve(name):
    """TRAIN_DEFAULTS and every preset pass the config layer (types, value checks) and build a model."""
    from msabench.core.config import ModelSpec, resolve_config

    cls = MODELS.get(name)
    spec = make_input_spec(tuple(m for m in MODALITIES if m in cls.SUPPORTED_MODALITIES), task=cls.TASKS[0],
                           aligned=cls.NEEDS_ALIGNED)
    for family in sorted(set(cls.PRESETS) | {"mosi", "meld"}):
        for tiny in (False, True):
            flat = resolve_config(cls, ModelSpec(name), family, tiny=tiny)
            for key, value in cls.TRAIN_DEFAULTS.items():
                assert flat[key] == cls.PRESETS.get(family, {}).get(key, value)
            cfg = config_from_flat(cls.config_cls, flat)
            if tiny:
                assert cfg == cls.tiny()
            with torch.device("meta"):  # `msabench models --params`: no weights allocated
                cls(cfg, spec)


@pytest.mark.parametrize("name", NAMES)
def test_plugin_metadata(name):
    cls = MODELS.get(name)
    assert issubclass(cls, MSAModel)
    assert cls.name == name
    assert isinstance(cls.impl_version, int) and cls.impl_version >= 1
    assert set(cls.TASKS) <= set(TASKS) and cls.TASKS
    assert set(cls.SUPPORTED_MODALITIES) <= set(MODALITIES) and cls.SUPPORTED_MODALITIES
    assert set(cls.REQUIRED_MODALITIES) <= set(cls.SUPPORTED_MODALITIES)
    for key in TRAIN_KEYS_REQUIRED:
        assert key in cls.TRAIN_DEFAULTS, f"{name}.TRAIN_DEFAULTS lacks {key}"
    assert all(k.startswith("train.") for k in cls.TRAIN_DEFAULTS)
    assert set(cls.PRESETS) <= FAMILIES, set(cls.PRESETS) - FAMILIES
    for preset in list(cls.PRESETS.values()) + list(cls.VARIANTS.values()):
        assert all(k.split(".", 1)[0] in ("model", "train", "text", "data") and "." in k for k in preset)
    json.dumps(cls.TRAIN_DEFAULTS)
    json.dumps(cls.PRESETS)


@pytest.mark.parametrize("name", NAMES)
def test_docstring_cites_and_lists_deviations(name):
    cls = MODELS.get(name)
    doc = (inspect.getdoc(cls) or "") + "\n" + (inspect.getdoc(inspect.getmodule(cls)) or "")
    assert re.search(r"^Deviations\b", doc, re.MULTILINE), f"{name}'s docstring has no 'Deviations' section"


@pytest.mark.parametrize("name", NAMES)
def test_model_never_opens_data(name):
    cls = MODELS.get(name)
    source = inspect.getsource(importlib.import_module(cls.__module__))
    assert not re.search(r"msabench\.data\b|from\s+msabench\s+import\s+[^\n]*\bdata\b", source), \
        f"{name} imports msabench.data: models get an InputSpec and batches, never data"
    assert not re.search(r"\bopen\(|np\.load|torch\.load|\bimport pickle|pickle\.load", source), f"{name} reads files"
    # text goes through TextInput only (the future TextEncoder replaces it in one place)
    assert not re.search(r"\.text_(ids|feats)\b", source), f"{name} reads batch text directly; use TextInput"


# -- constant ---------------------------------------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
def test_constant_predicts_training_statistics(task):
    cls = MODELS.get("constant")
    spec = make_input_spec(task=task)
    model = cls(cls.tiny(), spec)
    ctx = TrainContext(model=model, optimizers=build_optimizers(model, {"train.lr": 0.0}),
                       loss_fn=task_loss_fn(task))
    assert ctx.optimizers == {}
    seen = [random_batch(spec, batch_size=n, seed=s) for n, s in ((8, 10), (5, 11), (7, 12))]
    ctx.epoch = 0
    model.train()
    for batch in seen:
        logged = model.training_step(batch, ctx)
        assert math.isfinite(logged["task"])
    model.on_epoch_end(ctx)
    # a later epoch (and other data) changes nothing
    ctx.epoch = 1
    model.training_step(random_batch(spec, batch_size=9, seed=13), ctx)
    model.on_epoch_end(ctx)

    y = torch.cat([b.y for b in seen])
    test = random_batch(spec, batch_size=4, seed=14)
    model.eval()
    with torch.no_grad():
        pred = model(test).pred
    if task == "regression":
        torch.testing.assert_close(pred, torch.full((4,), float(y.mean())))
    elif task == "classification":
        counts = torch.bincount(y, minlength=spec.n_outputs)
        assert (pred.argmax(dim=1) == int(counts.argmax())).all()
        torch.testing.assert_close(pred.softmax(dim=1)[0], counts.float() / counts.sum())
    else:
        torch.testing.assert_close(torch.sigmoid(pred), y.mean(dim=0).clamp(1e-6, 1 - 1e-6).expand(4, -1))
    # the statistics are buffers: they travel with the checkpoint
    clone = cls(cls.tiny(), spec)
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(clone.eval()(test).pred, pred)


def test_constant_without_epoch_end_hook_still_freezes_after_first_epoch():
    cls = MODELS.get("constant")
    spec = make_input_spec(task="regression")
    model = cls(cls.tiny(), spec)
    ctx = TrainContext(model=model, optimizers={}, loss_fn=task_loss_fn("regression"))
    first = random_batch(spec, batch_size=8, seed=20)
    ctx.epoch = 1  # whatever numbering the loop uses
    model.training_step(first, ctx)
    ctx.epoch = 2
    model.training_step(random_batch(spec, batch_size=8, seed=21), ctx)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(first).pred, torch.full((8,), float(first.y.mean())))
