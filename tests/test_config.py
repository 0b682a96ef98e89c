from __future__ import annotations

from dataclasses import dataclass

import pytest

from msabench.core.config import GLOBAL_DEFAULTS, parse_model_spec, resolve_config
from msabench.core.errors import UserError
from msabench.core.registry import Registry


@dataclass(frozen=True)
class FakeConfig:
    hidden: int = 32
    dropout: float = 0.1


class FakeModel:
    name = "fake"
    config_cls = FakeConfig
    TRAIN_DEFAULTS = {"train.lr": 5e-4, "train.batch_size": 64}
    PRESETS = {"mosei": {"model.hidden": 64, "train.lr": 1e-4}}
    VARIANTS = {"wide": {"model.hidden": 128}}

    @classmethod
    def tiny(cls):
        return FakeConfig(hidden=4)


def test_parse_model_spec_forms():
    assert parse_model_spec("tfn").name == "tfn"
    s = parse_model_spec("s2lif@v2t-frozen:model.order=v2t,text.frozen=true")
    assert (s.name, s.variant, s.overrides) == ("s2lif", "v2t-frozen", {"model.order": "v2t", "text.frozen": True})
    assert parse_model_spec("x:model.dims=[1,2],train.lr=1e-3").overrides == {"model.dims": [1, 2], "train.lr": 0.001}


@pytest.mark.parametrize("bad", ["", "tfn:", "tfn:hidden=3", "tfn:model.hidden", "t f n", "tfn@"])
def test_bad_model_specs_are_user_errors(bad):
    with pytest.raises(UserError):
        parse_model_spec(bad)


def test_precedence_defaults_preset_policy_set_variant_inline():
    spec = parse_model_spec("fake@wide:model.dropout=0.3")
    cfg = resolve_config(FakeModel, spec, "mosei", policy={"train.epochs": 5, "train.lr": 2e-4},
                         user_set={"train.lr": 3e-4, "model.hidden": 99})
    assert cfg["model.hidden"] == 128  # variant beats --set, which beats the preset
    assert cfg["train.lr"] == 3e-4  # --set beats policy beats preset beats defaults
    assert cfg["train.epochs"] == 5
    assert cfg["model.dropout"] == 0.3
    assert cfg["train.batch_size"] == 64
    assert cfg["train.patience"] == GLOBAL_DEFAULTS["train.patience"]


def test_unknown_key_suggests_close_match():
    with pytest.raises(UserError, match="model.hidden"):
        resolve_config(FakeModel, parse_model_spec("fake:model.hiden=3"), "mosi")


def test_set_key_known_to_another_model_is_tolerated():
    cfg = resolve_config(FakeModel, parse_model_spec("fake"), "mosi", user_set={"model.order": "v2t"},
                         tolerated_model_keys={"model.order"})
    assert "model.order" not in cfg
    with pytest.raises(UserError):
        resolve_config(FakeModel, parse_model_spec("fake"), "mosi", user_set={"model.order": "v2t"})


def test_bad_type_and_unknown_variant():
    with pytest.raises(UserError, match="takes a int"):
        resolve_config(FakeModel, parse_model_spec("fake:model.hidden=wide"), "mosi")
    with pytest.raises(UserError, match="wide"):
        resolve_config(FakeModel, parse_model_spec("fake@wid"), "mosi")
    cfg = resolve_config(FakeModel, parse_model_spec("fake:model.dropout=1"), "mosi")
    assert cfg["model.dropout"] == 1.0 and isinstance(cfg["model.dropout"], float)


def test_tiny_ignores_model_keys_of_presets():
    cfg = resolve_config(FakeModel, parse_model_spec("fake"), "mosei", tiny=True)
    assert cfg["model.hidden"] == 4 and cfg["train.lr"] == 1e-4


def test_registry_refuses_duplicates_and_suggests():
    reg = Registry("thing")
    reg.add("alpha", 1)
    with pytest.raises(ValueError):
        reg.add("alpha", 2)
    with pytest.raises(UserError, match="alpha"):
        reg.get("alpah")


def test_caps_bound_from_above_but_set_can_exceed_them():
    spec = parse_model_spec("fake")
    assert resolve_config(FakeModel, spec, "mosi", caps={"train.epochs": 10})["train.epochs"] == 10
    low = {"train.epochs": 3}
    assert resolve_config(FakeModel, spec, "mosi", policy=low, caps={"train.epochs": 10})["train.epochs"] == 3
    cfg = resolve_config(FakeModel, spec, "mosi", caps={"train.epochs": 10}, user_set={"train.epochs": 40})
    assert cfg["train.epochs"] == 40


def test_the_word_none_is_a_string_for_string_keys_and_null_elsewhere():
    """`train.scheduler=none` names the scheduler "none"; `train.lr=none` is still refused."""
    cfg = resolve_config(FakeModel, parse_model_spec("fake:train.scheduler=none"), "mosi",
                         user_set={"train.scheduler": None})
    assert cfg["train.scheduler"] == "none"
    with pytest.raises(UserError, match="train.lr=null is not a value"):
        resolve_config(FakeModel, parse_model_spec("fake:train.lr=none"), "mosi")
