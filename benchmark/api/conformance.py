"""Helpers for the conformance suite and for third-party plugin authors.

``make_input_spec`` builds a small `InputSpec`; ``random_batch`` builds a `Batch` that fits it,
with variable lengths (padding that a model must mask) and labels that are a function of the
inputs, so a model can learn them::

    from msabench.api.conformance import make_input_spec, random_batch
    spec = make_input_spec(("t", "v"), task="classification", text_kind="tokens")
    model = MyModel(MyModel.tiny(), spec)
    out = model(random_batch(spec, batch_size=8, seed=0))
    assert out.pred.shape == (8, spec.n_outputs)

Nothing here opens data or needs a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from msabench.core.types import TASKS, Batch, InputSpec

DEFAULT_DIMS = {"t": 12, "a": 6, "v": 9}
DEFAULT_MAX_LENS = {"t": 7, "a": 10, "v": 8}
SPECIAL_IDS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3}
N_OUTPUTS = {"regression": 1, "classification": 3, "multilabel": 4}


def ground_truth_groups(dims: dict[str, int]) -> dict[str, dict[str, list[int]]]:
    """A synthetic-style ground truth: per modality the first third of the features is invariant,
    the second third spurious, the rest style (at least one feature in each of the first two)."""
    groups = {}
    for m, d in dims.items():
        k = max(1, d // 3)
        groups[m] = {
            "invariant": list(range(0, k)),
            "spurious": list(range(k, min(d, 2 * k))),
            "style": list(range(min(d, 2 * k), d)),
        }
    return groups


def make_input_spec(
    modalities: Sequence[str] = ("t", "a", "v"),
    task: str = "regression",
    text_kind: str = "features",
    *,
    dims: dict[str, int] | None = None,
    max_lens: dict[str, int] | None = None,
    vocab_size: int = 40,
    n_outputs: int | None = None,
    label_rule: str = "sign",
    family: str = "mosi",
    domains: Sequence[str] = (),
    ground_truth: bool = False,
    feature_groups: dict[str, dict[str, list[int]]] | None = None,
) -> InputSpec:
    """A small InputSpec. ``ground_truth=True`` fills ``feature_groups`` as a synthetic dataset
    would (see `ground_truth_groups`); ``feature_groups`` gives them explicitly."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if text_kind not in ("features", "tokens"):
        raise ValueError(f"unknown text kind {text_kind!r}; use 'features' or 'tokens'")
    modalities = tuple(modalities)
    all_dims = {**DEFAULT_DIMS, **(dims or {})}
    all_lens = {**DEFAULT_MAX_LENS, **(max_lens or {})}
    mdims = {m: int(all_dims[m]) for m in modalities}
    if feature_groups is None:
        feature_groups = ground_truth_groups(mdims) if ground_truth else {}
    return InputSpec(
        modalities=modalities,
        dims=mdims,
        max_lens={m: int(all_lens[m]) for m in modalities},
        text_kind=text_kind,
        vocab_size=vocab_size if text_kind == "tokens" else 0,
        special_ids=dict(SPECIAL_IDS) if text_kind == "tokens" else {},
        task=task,
        n_outputs=n_outputs if n_outputs is not None else N_OUTPUTS[task],
        label_rule=label_rule,
        family=family,
        domains=tuple(domains),
        feature_groups=feature_groups,
    )


def _lengths(max_len: int, batch_size: int, g: torch.Generator) -> torch.Tensor:
    lens = torch.randint(1, max_len + 1, (batch_size,), generator=g)
    lens[0] = max_len  # one full-length sample
    if batch_size > 1:
        lens[1] = max(1, max_len // 3)  # one short sample: most of it is padding
    return lens


def random_batch(spec: InputSpec, batch_size: int = 8, seed: int = 0) -> Batch:
    """A batch that fits ``spec``: variable lengths, masks True on real positions, zeros (or the pad
    id) on padding, and labels that depend on the inputs.

    Each sample has a latent sentiment ``z ~ N(0, 1)``. It shifts the label-carrying features of
    audio, vision and text features (the ground truth's invariant features when the spec has them,
    else feature 0) on real positions; with text tokens it sets the share of even ("positive") ids.
    Labels: regression ``3 tanh(z)`` in [-3, 3] (float, (B,)); classification neg/neu/pos by the
    terciles of N(0, 1) (long, (B,)); multilabel four 0/1 labels of ``z`` (float, (B, 4)).
    """
    g = torch.Generator().manual_seed(int(seed))
    b = int(batch_size)
    z = torch.randn(b, generator=g)
    kwargs: dict[str, Any] = {}
    for m in spec.modalities:
        t_max = int(spec.max_lens[m])
        lens = _lengths(t_max, b, g)
        mask = torch.arange(t_max)[None, :] < lens[:, None]
        if m == "t" and spec.text_kind == "tokens":
            n_special = max(spec.special_ids.values(), default=-1) + 1
            lo = max(n_special, 0)
            ids = torch.randint(lo, spec.vocab_size, (b, t_max), generator=g)
            # positive words are the even ids: more of them when z is high
            positive = torch.rand(b, t_max, generator=g) < torch.sigmoid(2.0 * z)[:, None]
            ids = ids - (ids % 2) + (~positive).long()  # even when positive, odd otherwise
            ids = ids.clamp(lo, spec.vocab_size - 1)
            ids[:, 0] = spec.special_ids.get("cls", lo)
            last = (lens - 1).clamp_min(1)
            rows = torch.arange(b)[lens > 1]
            ids[rows, last[lens > 1]] = spec.special_ids.get("sep", lo)
            ids[~mask] = spec.special_ids.get("pad", 0)
            kwargs["text_ids"] = ids
            kwargs["text_mask"] = mask
            continue
        d = int(spec.dims[m])
        x = torch.randn(b, t_max, d, generator=g)
        signal = spec.feature_groups.get(m, {}).get("invariant") or [0]
        x[:, :, signal] += 1.5 * z[:, None, None]
        x = x * mask[:, :, None]
        if m == "t":
            kwargs["text_feats"] = x.float()
            kwargs["text_mask"] = mask
        elif m == "a":
            kwargs["audio"] = x.float()
            kwargs["audio_mask"] = mask
        else:
            kwargs["vision"] = x.float()
            kwargs["vision_mask"] = mask
    if spec.task == "regression":
        y = (3.0 * torch.tanh(z)).clamp(-3.0, 3.0).float()
    elif spec.task == "classification":
        y = torch.bucketize(z, torch.tensor([-0.4307, 0.4307])).long()
        y = y.clamp_max(spec.n_outputs - 1)
    else:
        y = torch.stack([z > 0.5, z < -0.5, z.abs() > 1.0, z.abs() < 0.5], dim=1).float()
    return Batch(
        index=torch.arange(b, dtype=torch.long),
        domain=torch.zeros(b, dtype=torch.long),
        y=y,
        **kwargs,
    )
