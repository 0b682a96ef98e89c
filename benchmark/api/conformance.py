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

from msabench.api.types import Batch, InputSpec
from msabench.core.types import TASKS

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
    aligned: bool = False,
) -> InputSpec:
    """A small InputSpec. ``ground_truth=True`` fills ``feature_groups`` as a synthetic dataset
    would (see `ground_truth_groups`); ``feature_groups`` gives them explicitly. ``aligned=True``
    puts every modality at the text's length (and `random_batch` gives each sample one length).
    ``text_kind="encoded"``: text as ids through a fine-tuned tiny-bert (`msabench.api.text_encoder`)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if text_kind not in ("features", "tokens", "encoded"):
        raise ValueError(f"unknown text kind {text_kind!r}; use 'features', 'tokens' or 'encoded'")
    modalities = tuple(modalities)
    all_dims = {**DEFAULT_DIMS, **(dims or {})}
    encoder: dict[str, Any] = {}
    special_ids = dict(SPECIAL_IDS) if text_kind == "tokens" else {}
    if text_kind == "encoded":  # a fine-tuned tiny-bert over the synthetic vocabulary (no files needed)
        from msabench.api.text_encoder import TINY_BERT, TINY_BERT_SHAPE, EncoderSettings, load_pretrained

        tiny = load_pretrained(TINY_BERT)
        encoder = EncoderSettings(name=TINY_BERT, frozen=False,
                                  max_length=int({**DEFAULT_MAX_LENS, **(max_lens or {})}["t"])).as_dict()
        all_dims["t"] = TINY_BERT_SHAPE["hidden_size"]
        vocab_size, special_ids = len(tiny.vocab), dict(tiny.special_ids)
    all_lens = {**DEFAULT_MAX_LENS, **(max_lens or {})}
    if aligned:
        all_lens = {m: all_lens["t"] for m in all_lens}
    mdims = {m: int(all_dims[m]) for m in modalities}
    if feature_groups is None:
        feature_groups = ground_truth_groups(mdims) if ground_truth else {}
    return InputSpec(
        modalities=modalities,
        dims=mdims,
        max_lens={m: int(all_lens[m]) for m in modalities},
        text_kind=text_kind,
        vocab_size=vocab_size if text_kind != "features" else 0,
        special_ids=special_ids,
        task=task,
        n_outputs=n_outputs if n_outputs is not None else N_OUTPUTS[task],
        label_rule=label_rule,
        family=family,
        domains=tuple(domains),
        feature_groups=feature_groups,
        aligned=aligned or len({all_lens[m] for m in modalities}) <= 1,
        text_encoder=encoder,
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
    shared_lens = _lengths(int(spec.max_lens[spec.modalities[0]]), b, g) if spec.aligned else None
    for m in spec.modalities:
        t_max = int(spec.max_lens[m])
        lens = shared_lens if shared_lens is not None else _lengths(t_max, b, g)
        mask = torch.arange(t_max)[None, :] < lens[:, None]
        if m == "t" and spec.text_kind in ("tokens", "encoded"):
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


# -- checks a plugin author runs (tests/test_conformance.py runs them over every registered model) --

def build_tiny(cls: type, spec: InputSpec, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return cls(cls.tiny(), spec)


def training_context(model: Any, spec: InputSpec, *, lr: float = 1e-2, n_train: int = 64,
                     steps_per_epoch: int = 3, epochs: int = 1) -> Any:
    """A `TrainContext` as the loop builds it, for driving `training_step` outside the loop."""
    from msabench.api.context import TrainContext, build_optimizers, build_schedulers, task_loss_fn

    cfg = {"train.lr": lr, "train.text_lr": lr, "train.optimizer": "adam", "train.weight_decay": 0.0,
           "train.batch_size": max(1, n_train // steps_per_epoch), "train.epochs": epochs}
    optimizers = build_optimizers(model, cfg)
    return TrainContext(model=model, optimizers=optimizers, loss_fn=task_loss_fn(spec.task), train_cfg=cfg,
                        schedulers=build_schedulers(model, cfg, optimizers, steps_per_epoch * epochs),
                        n_train=n_train, steps_per_epoch=steps_per_epoch, epochs=epochs)


def run_epochs(model: Any, ctx: Any, batches: Sequence[Batch], epochs: int,
               first_epoch: int = 0) -> list[dict[str, float]]:
    """Drive the model as the loop does: epoch hooks around `training_step` over `batches`."""
    import math

    logged_all = []
    for epoch in range(first_epoch, first_epoch + epochs):
        ctx.epoch = epoch
        model.train()
        model.on_epoch_start(ctx)
        for batch in batches:
            logged = model.training_step(batch, ctx)
            assert logged and all(isinstance(v, float) for v in logged.values()), \
                f"training_step must return a dict of floats, got {logged!r}"
            assert all(math.isfinite(v) for v in logged.values()), f"non-finite loss logged: {logged}"
            logged_all.append(logged)
        ctx.flush()
        model.on_epoch_end(ctx)
        model.on_validation_end(ctx, [])
    return logged_all


def batch_tensors(batch: Batch) -> dict[str, torch.Tensor]:
    """Copies of every tensor a batch holds, by name (the missing view's and unimodal labels' too)."""
    out = {k: v.clone() for k, v in vars(batch).items() if isinstance(v, torch.Tensor)}
    for k, v in (batch.y_unimodal or {}).items():
        out[f"y_unimodal.{k}"] = v.clone()
    if batch.missing is not None:
        out.update({f"missing.drop.{k}": v.clone() for k, v in batch.missing.drop.items()})
        out.update({f"missing.complete.{k}": v.clone() for k, v in batch.missing.complete.items()})
    return out


def check_forward(cls: type, spec: InputSpec, batch_size: int = 6) -> None:
    """Output shape and dtype, finite predictions, aux losses and named features, train and eval mode;
    the batch is left as it was (no in-place write into any of its tensors)."""
    from msabench.api.types import ModelOutput

    model = build_tiny(cls, spec)
    batch = random_batch(spec, batch_size=batch_size, seed=1)
    before = batch_tensors(batch)
    expected = (batch_size,) if spec.task == "regression" else (batch_size, spec.n_outputs)
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            out = model(batch)
        written = sorted(k for k, v in batch_tensors(batch).items() if not torch.equal(v, before[k]))
        # Evaluation batches are views of the dataset's (possibly read-only, memory-mapped) arrays.
        assert not written, f"forward wrote into its batch ({', '.join(written)}); work on a copy instead"
        assert isinstance(out, ModelOutput), f"forward returned {type(out).__name__}, not ModelOutput"
        assert tuple(out.pred.shape) == expected, f"pred shape {tuple(out.pred.shape)}, expected {expected}"
        assert out.pred.dtype == torch.float32, f"pred dtype {out.pred.dtype}, expected float32"
        assert torch.isfinite(out.pred).all(), "non-finite predictions"
        for key, aux in out.aux_losses.items():
            assert aux.dim() == 0 and torch.isfinite(aux), f"aux loss {key!r} is not a finite scalar"
        for key, feat in out.features.items():
            assert feat.shape[0] == batch_size and torch.isfinite(feat).all(), f"feature {key!r}"


def check_training_updates_every_parameter(cls: type, spec: InputSpec) -> None:
    """`training_step` (as the loop drives it, for `cls.CONFORMANCE_EPOCHS` epochs) moves every
    trainable parameter, and `param_groups` hands each to exactly one optimiser group."""
    model = build_tiny(cls, spec)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not cls.HAS_TRAINABLE_PARAMS:
        assert not params, f"{cls.name} says HAS_TRAINABLE_PARAMS = False but has {sorted(params)}"
        return
    assert params, f"{cls.name} has no trainable parameters; set HAS_TRAINABLE_PARAMS = False"
    from msabench.api.context import optimizer_specs

    grouped = [id(p) for s in optimizer_specs(model, {"train.lr": 1e-3}).values() for g in s.groups
               for p in g["params"]]
    assert len(grouped) == len(set(grouped)), "a parameter sits in two optimiser groups"
    missing = sorted(n for n, p in params.items() if id(p) not in set(grouped))
    assert not missing, f"parameters in no optimiser group: {missing}"
    before = {n: p.detach().clone() for n, p in params.items()}
    batches = [random_batch(spec, batch_size=7, seed=2 + i) for i in range(3)]  # odd: L1 terms cannot cancel
    ctx = training_context(model, spec, lr=1e-2, n_train=21, steps_per_epoch=3, epochs=cls.CONFORMANCE_EPOCHS)
    run_epochs(model, ctx, batches, cls.CONFORMANCE_EPOCHS)
    for n, p in params.items():
        assert torch.isfinite(p).all(), f"{n} became non-finite"
    frozen = sorted(n for n, p in params.items() if torch.equal(p.detach(), before[n]))
    assert not frozen, f"parameters that training never moved (no gradient reaches them): {frozen}"


def check_deterministic(cls: type, spec: InputSpec) -> None:
    """Same seed, same weights; eval twice, same predictions; another seed, other weights."""
    a, b = build_tiny(cls, spec, seed=3), build_tiny(cls, spec, seed=3)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs between two builds with one seed"
    batch = random_batch(spec, batch_size=5, seed=4)
    a.eval()
    b.eval()
    with torch.no_grad():
        p1, p2, p3 = a(batch).pred, a(batch).pred, b(batch).pred
    assert torch.equal(p1, p2), "eval is not deterministic"
    assert torch.equal(p1, p3), "same seed, other predictions"
    if cls.HAS_TRAINABLE_PARAMS:
        c = build_tiny(cls, spec, seed=4)
        assert any(not torch.equal(sa[k], v) for k, v in c.state_dict().items() if v.is_floating_point()), \
            "another seed gives the same weights"


def check_padding_masked(cls: type, spec: InputSpec) -> None:
    """For a model with `MASKS_PADDING`: values on padded positions never change the output."""
    import dataclasses

    model = build_tiny(cls, spec).eval()
    batch = random_batch(spec, batch_size=6, seed=5)
    g = torch.Generator().manual_seed(0)
    noisy = dataclasses.replace(batch)
    for attr, mask_attr in (("text_feats", "text_mask"), ("audio", "audio_mask"), ("vision", "vision_mask")):
        x = getattr(batch, attr)
        if x is None:
            continue
        pad = ~getattr(batch, mask_attr)
        junk = 100.0 * torch.randn(x.shape, generator=g)
        setattr(noisy, attr, torch.where(pad[..., None], junk, x))
    if batch.text_ids is not None:
        junk = torch.randint(0, spec.vocab_size, batch.text_ids.shape, generator=g)
        noisy.text_ids = torch.where(~batch.text_mask, junk, batch.text_ids)
    with torch.no_grad():
        torch.testing.assert_close(model(noisy).pred, model(batch).pred, rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f"padding leaks into the output: {m}")


def check_loss_falls(cls: type, spec: InputSpec, steps: int = 40, lr: float = 1e-2) -> tuple[float, float]:
    """Training on one fixed batch through `training_step` lowers its task loss to < 0.75 of the start."""
    from msabench.api.context import task_loss_fn

    model = build_tiny(cls, spec, seed=0)
    batch = random_batch(spec, batch_size=16, seed=6)
    loss_fn = task_loss_fn(spec.task)
    ctx = training_context(model, spec, lr=lr, n_train=16, steps_per_epoch=1, epochs=steps)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(loss_fn(model(batch).pred, batch.y))

    logged = run_epochs(model, ctx, [batch], 3)
    first = sum(v.get("task", v.get("total", 0.0)) for v in logged) / len(logged)
    run_epochs(model, ctx, [batch], 2, first_epoch=3)
    start = min(first, eval_loss())  # after a few steps: BatchNorm running statistics have warmed up
    run_epochs(model, ctx, [batch], steps - 5, first_epoch=5)
    after = eval_loss()
    assert ctx.step_index >= steps, f"{ctx.step_index} optimisation steps in {steps} training steps"
    assert after < 0.75 * start, f"loss {start:.4f} -> {after:.4f}"
    return start, after
