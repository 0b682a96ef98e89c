"""Tensors for one run and batches over them, with no per-sample Python in the hot path.

Each (split, domain) becomes a `TensorSplit`: contiguous tensors built once (from memory-mapped
arrays where the reader gave them), masks from lengths, labels in the task's form, and, when a
missing rate is active, the masked view and the drop masks (static across epochs and seeds).
A shuffled (training) batch is one `np.take` per array with one index vector, wrapped as tensors
without a copy: on the CPU torch build we use, `torch.index_select` over a (N, T, D) float tensor was
5-30x slower than `np.take` on this 2-core machine (perf/bench_batching.py measures both side by side).
An in-order (evaluation) batch is a zero-copy view of the arrays (a slice along the sample axis): no
bytes are copied at all, which took the gathering share of an LMF epoch from 9.5% to the training
pass's share alone (perf/bench_epoch.py). A model's forward therefore must never write into its
batch; `msabench.api.conformance.check_forward` fails any model that does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from msabench.api.text_encoder import EncoderSettings, load_pretrained, token_ids
from msabench.api.types import Batch, MissingView
from msabench.core.errors import UserError
from msabench.data.container import DatasetData, SplitData

_FIELDS = {"t": ("text", "text_mask"), "a": ("audio", "audio_mask"), "v": ("vision", "vision_mask")}


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """Zero-copy view of a (possibly read-only, memory-mapped) array; msabench never writes to it."""
    array = np.ascontiguousarray(array)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns on read-only arrays
        return torch.from_numpy(array)


def length_mask(lengths: np.ndarray, max_len: int) -> np.ndarray:
    return np.arange(max_len)[None, :] < np.asarray(lengths, dtype=np.int64)[:, None]


def gather(array: np.ndarray, index: np.ndarray | slice) -> torch.Tensor:
    """Rows `index` of `array`: a copy for an index vector, a zero-copy view for a slice."""
    if isinstance(index, slice):
        return as_tensor(array[index])
    return torch.from_numpy(np.take(array, index, axis=0))


@dataclass
class TensorSplit:
    split: str
    domain: str
    domain_index: int
    ids: np.ndarray
    y: np.ndarray
    inputs: dict[str, np.ndarray]  # text/audio/vision and their masks, as Batch field names
    text_is_tokens: bool
    complete: dict[str, np.ndarray] = field(default_factory=dict)  # un-dropped inputs
    drop: dict[str, np.ndarray] = field(default_factory=dict)  # (N, T) bool, True = dropped
    mask_hashes: dict[str, str] = field(default_factory=dict)
    domain_ids: np.ndarray | None = None  # per sample, when several domains are merged
    y_unimodal: dict[str, np.ndarray] = field(default_factory=dict)  # SIMS: per-modality scores
    # Training masks redrawn every epoch (missing-random); the loop calls it before each epoch.
    redraw: Callable[[int], None] | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def y_tensor(self) -> torch.Tensor:
        return as_tensor(self.y)

    def batch(self, index: np.ndarray | slice) -> Batch:
        """The samples at `index`: an index vector (copied rows) or a slice (views of the arrays)."""
        positions = np.arange(*index.indices(len(self))) if isinstance(index, slice) else index
        fields = {k: gather(v, index) for k, v in self.inputs.items()}
        text = fields.pop("text", None)
        missing = None
        if self.drop:
            missing = MissingView(
                drop={m: gather(d, index) for m, d in self.drop.items()},
                complete={m: gather(c, index) for m, c in self.complete.items()},
            )
        return Batch(
            index=torch.from_numpy(positions),
            domain=(gather(self.domain_ids, index) if self.domain_ids is not None
                    else torch.full((positions.shape[0],), self.domain_index, dtype=torch.long)),
            y=gather(self.y, index),
            y_unimodal={m: gather(v, index) for m, v in self.y_unimodal.items()} or None,
            text_ids=text if self.text_is_tokens else None,
            text_feats=None if self.text_is_tokens else text,
            missing=missing,
            **fields,
        )

    def head(self, n: int) -> TensorSplit:
        """The first `n` samples (a time calibration's slice; training masks stay as they are)."""
        def cut(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {k: v[:n] for k, v in d.items()}

        return replace(self, ids=self.ids[:n], y=self.y[:n], inputs=cut(self.inputs),
                                   complete=cut(self.complete), drop=cut(self.drop), y_unimodal=cut(self.y_unimodal),
                                   domain_ids=None if self.domain_ids is None else self.domain_ids[:n], redraw=None)

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Shuffled (copied rows) when a generator is given, else in order (views, no copy)."""
        n = len(self)
        if generator is None:
            for start in range(0, n, batch_size):
                yield self.batch(slice(start, min(start + batch_size, n)))
            return
        order = torch.randperm(n, generator=generator).numpy()
        for start in range(0, n, batch_size):
            yield self.batch(order[start : start + batch_size])


def labels_for_task(split: SplitData, data: DatasetData, task: str, label_rule: str) -> np.ndarray:
    from msabench.data.labels import to_classes

    if task == "regression":
        if split.regression is None:
            raise UserError(f"{data.name} has no sentiment scores; use a protocol with a class head")
        return np.asarray(split.regression, dtype=np.float32)
    if task == "classification":
        if split.classification is not None:
            return np.asarray(split.classification, dtype=np.int64)
        if split.regression is not None:
            return to_classes(np.asarray(split.regression), label_rule).astype(np.int64)
        raise UserError(f"{data.name} has no sentiment labels for a 3-class head")
    if task == "multilabel":
        if split.multilabel is None:
            raise UserError(f"{data.name} has no multi-label emotion labels")
        return np.asarray(split.multilabel, dtype=np.float32)
    raise ValueError(task)


def text_array(split: SplitData, data: DatasetData, text_tokens: bool,
               encoder: EncoderSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    if encoder is not None:
        return token_ids(split, data, encoder)
    if text_tokens:
        if split.text_ids is None:
            raise UserError(
                f"{data.name} has no token ids; use text.encoder=features (precomputed features) for it"
            )
        return split.text_ids, split.text_lengths
    if split.text_feats is None:
        raise UserError(
            f"{data.name} has no precomputed text features: add a features.npz beside its label file "
            f"(docs/architecture.md §5), or leave text out with --modalities"
        )
    return split.text_feats, split.text_lengths


def build_tensor_split(
    data: DatasetData,
    split_name: str,
    domain_index: int,
    *,
    modalities: tuple[str, ...],
    task: str,
    label_rule: str,
    text_tokens: bool,
    rate: float = 0.0,
    encoder: EncoderSettings | None = None,
    mask_scheme: str = "msabench",
) -> TensorSplit:
    """One split's tensors. With an `encoder`, text is the encoder's token ids (dropped tokens -> its
    [UNK]); a frozen encoder's outputs replace them afterwards (`msabench.engine.text_encoding`)."""
    from msabench.data import masks

    split = data.splits[split_name]
    inputs: dict[str, np.ndarray] = {}
    complete: dict[str, np.ndarray] = {}
    drop: dict[str, np.ndarray] = {}
    hashes: dict[str, str] = {}
    for m in modalities:
        if m == "t":
            values, lengths = text_array(split, data, text_tokens, encoder)
        else:
            values, lengths = split.modality(m)
            if values is None:
                raise UserError(f"{data.name} has no {'audio' if m == 'a' else 'vision'} features; drop it with "
                                "--modalities")
        value_key, mask_key = _FIELDS[m]
        inputs[mask_key] = length_mask(lengths, values.shape[1])
        tokens = m == "t" and (text_tokens or encoder is not None)
        if rate > 0:
            # Token text keeps [CLS]/[SEP] (EMT-DLFR drops words before BERT). Precomputed vectors are
            # zeroed after encoding instead, and there every position goes, the [CLS] summary included.
            dropped = masks.drop_masks(
                np.asarray(lengths), values.shape[1], rate, dataset=data.name, split=split_name, modality=m,
                mask_seed=masks.DEFAULT_MASK_SEEDS[m], keep_ends=tokens, scheme=mask_scheme,
            )
            hashes[m] = masks.mask_hash(dropped)
            unk = None
            if tokens:
                unk = (load_pretrained(encoder.name).special_ids["unk"] if encoder is not None
                       else data.special_ids.get("unk"))
            complete[m] = values
            drop[m] = dropped
            values = masks.apply_drop(np.asarray(values), dropped, unk_id=unk)
        inputs[value_key] = values
    y = labels_for_task(split, data, task, label_rule)
    # Unimodal scores (CH-SIMS) accompany a regression task only: they are scores on the same scale.
    y_unimodal = ({m: np.asarray(v, dtype=np.float32) for m, v in split.unimodal.items()}
                  if task == "regression" else {})
    return TensorSplit(
        split=split_name, domain=data.name, domain_index=domain_index, ids=np.asarray(split.ids), y=y,
        inputs=inputs, text_is_tokens=text_tokens or encoder is not None, complete=complete, drop=drop,
        mask_hashes=hashes, y_unimodal=y_unimodal,
    )


def random_rate_split(data: DatasetData, split_name: str, domain_index: int, *, modalities: tuple[str, ...],
                      task: str, label_rule: str, text_tokens: bool, seed: int) -> TensorSplit:
    """A split whose drop masks are redrawn every epoch with a random rate per sample and modality
    (`missing-random`, LNLN; `msabench.data.masks.random_rate_drop_masks`). Epoch 0's masks are
    drawn here; `redraw(epoch)` replaces them (the hashes kept are epoch 0's)."""
    from msabench.data import masks

    out = build_tensor_split(data, split_name, domain_index, modalities=modalities, task=task,
                             label_rule=label_rule, text_tokens=text_tokens)
    complete = {m: out.inputs[_FIELDS[m][0]] for m in modalities}
    lengths = {m: out.inputs[_FIELDS[m][1]].sum(axis=1) for m in modalities}
    unk = data.special_ids.get("unk") if text_tokens else None

    def redraw(epoch: int) -> None:
        for m in modalities:
            drop, _ = masks.random_rate_drop_masks(lengths[m], complete[m].shape[1], dataset=data.name,
                                                   split=split_name, modality=m, epoch=epoch, seed=seed)
            out.drop[m], out.complete[m] = drop, complete[m]
            out.inputs[_FIELDS[m][0]] = masks.apply_drop(np.asarray(complete[m]), drop,
                                                         unk_id=unk if m == "t" else None)
            if epoch == 0:
                out.mask_hashes[m] = masks.mask_hash(drop)

    redraw(0)
    out.redraw = redraw
    return out


def concat_splits(parts: list[TensorSplit]) -> TensorSplit:
    """One training set over several source domains (multi-source DG); per-sample domain kept."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    inputs = {k: np.concatenate([p.inputs[k] for p in parts]) for k in first.inputs}
    merged = TensorSplit(
        split=first.split, domain="+".join(p.domain for p in parts), domain_index=0,
        ids=np.concatenate([p.ids for p in parts]), y=np.concatenate([p.y for p in parts]), inputs=inputs,
        text_is_tokens=first.text_is_tokens,
        complete={k: np.concatenate([p.complete[k] for p in parts]) for k in first.complete},
        drop={k: np.concatenate([p.drop[k] for p in parts]) for k in first.drop},
        y_unimodal=({k: np.concatenate([p.y_unimodal[k] for p in parts]) for k in first.y_unimodal}
                    if all(p.y_unimodal.keys() == first.y_unimodal.keys() for p in parts) else {}),
    )
    merged.domain_ids = np.concatenate([np.full(len(p), p.domain_index, dtype=np.int64) for p in parts])
    return merged
