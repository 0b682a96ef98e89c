"""Planning: the precedence of --tiny, --set and the model spec on a real plan."""

from __future__ import annotations

from msabench.plan.planner import plan
from msabench.plan.request import Request


def _epochs(**kwargs) -> int:
    (spec,) = plan(Request(protocol="standard", datasets=("synth-mosi",), seeds=(1,), tiny=True, **kwargs))
    return spec.config["train.epochs"]


def test_tiny_is_a_policy_that_set_and_the_model_spec_override():
    assert _epochs(models=("linear_probe",)) == 3
    assert _epochs(models=("linear_probe",), user_set={"train.epochs": 5}) == 5
    assert _epochs(models=("linear_probe:train.epochs=7",), user_set={"train.epochs": 5}) == 7
