"""`TextEncoder`: a Hugging Face transformer that turns token ids into text vectors.

Settings (`text.*` keys of a resolved config, `EncoderSettings`):

* ``text.encoder``: a Hugging Face model name (read with ``local_files_only`` when ``HF_HUB_OFFLINE``
  or ``TRANSFORMERS_OFFLINE`` is set), a local folder, or ``tiny-bert`` (below). ``features`` and
  ``tokens`` are not encoders: precomputed vectors, or ids through a trainable embedding.
* ``text.frozen``: frozen outputs are computed once per (split, mask) by the engine and read from
  the content-addressed cache (`msabench.store.text_cache`); fine-tuned encoders live inside the
  model (`TextInput`) and train in their own optimiser group at ``train.text_lr``.
* ``text.pooling``: ``sequence`` (B, T, D) token vectors, ``cls`` the first position's vector, or
  ``mean`` the mean over real positions; the pooled forms are (B, 1, D) with a one-position mask.
* ``text.layer``: which hidden state (``hidden_states[layer]``; -1 = the last layer, 0 = the
  embeddings). ``text.max_length``: tokens kept, [CLS] and [SEP] included. ``text.dtype``: the
  dtype the encoder runs in (float32, bfloat16, float16); cached outputs are stored as float32
  (bfloat16 has no numpy dtype), float16 outputs as float16.

``tiny-bert`` (`TINY_BERT`): a 2-layer, 32-wide BERT (`TINY_BERT_SHAPE`) over the synthetic suite's
WordPiece vocabulary (`msabench.data.synth_text.VOCAB`), randomly initialised from the fixed seed
`TINY_BERT_SEED` so that every run gets the same weights. It carries no language knowledge: it is
for smoke runs (`--tiny`) and tests of the encoder path, not for results.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from msabench.core.errors import UserError

TINY_BERT = "tiny-bert"
TINY_BERT_SEED = 20240611
TINY_BERT_SHAPE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                   "max_position_embeddings": 128}
NOT_ENCODERS = ("features", "tokens")
POOLINGS = ("sequence", "cls", "mean")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# sha256 of bert-base-uncased's vocabulary (tokens in id order, joined by newlines): MMSA's `text_bert`
# ids are in it. all-MiniLM-L6-v2 ships the same vocabulary (30522 tokens), which is where we hashed it.
BERT_BASE_UNCASED_VOCAB_SHA256 = "0f052197aac305fe42f378b5c61554b7bacb34b8be4af83fec2cfdcdffbc9973"
# Files whose bytes decide an encoder's outputs (weights, architecture, tokenizer).
_FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")

# Process-wide count of what the encoders computed: "batches" and "samples" through forward().
ENCODER_PASSES: Counter = Counter()


@dataclass(frozen=True)
class EncoderSettings:
    name: str
    frozen: bool = True
    pooling: str = "sequence"
    layer: int = -1
    max_length: int = 50
    dtype: str = "float32"

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> EncoderSettings | None:
        """The encoder a resolved config asks for, or None for precomputed features / plain tokens."""
        name = str(cfg.get("text.encoder", "features"))
        if name in NOT_ENCODERS:
            return None
        settings = cls(name=name, frozen=bool(cfg.get("text.frozen", True)),
                       pooling=str(cfg.get("text.pooling", "sequence")), layer=int(cfg.get("text.layer", -1)),
                       max_length=int(cfg.get("text.max_length", 50)), dtype=str(cfg.get("text.dtype", "float32")))
        if settings.pooling not in POOLINGS:
            raise UserError(f"text.pooling={settings.pooling!r}: use one of {', '.join(POOLINGS)}")
        if settings.dtype not in DTYPES:
            raise UserError(f"text.dtype={settings.dtype!r}: use one of {', '.join(DTYPES)}")
        if settings.max_length < 2:
            raise UserError(f"text.max_length={settings.max_length}: needs at least 2 ([CLS] and [SEP])")
        return settings

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PretrainedEncoder:
    """What one encoder name resolves to: its folder (None for tiny-bert), config, tokenizer, vocabulary."""

    name: str
    folder: Path | None
    config: Any
    tokenizer: Any  # a transformers tokenizer, or None for tiny-bert (ids come from the synthetic suite)
    vocab: tuple[str, ...]
    special_ids: dict[str, int]
    fingerprint: str  # sha256 over the weight, config and tokenizer files (tiny-bert: shape, seed, vocab)

    @property
    def vocab_sha256(self) -> str:
        return vocab_sha256(self.vocab)

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    def build_module(self) -> nn.Module:
        """A fresh transformer with the pretrained (tiny-bert: seeded random; config-only: random) weights."""
        if self.folder is None:
            from transformers import BertModel

            with torch.random.fork_rng(devices=[]):  # the run's own RNG stream is left as it was
                torch.manual_seed(TINY_BERT_SEED)
                return BertModel(self.config, add_pooling_layer=False)
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one bar per run would clutter the sweep's progress lines
        return AutoModel.from_pretrained(self.folder, local_files_only=True)


def vocab_sha256(vocab) -> str:
    return hashlib.sha256("\n".join(vocab).encode()).hexdigest()


def _offline() -> bool:
    return any(os.environ.get(k, "").strip() not in ("", "0") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _resolve_folder(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists() or name.startswith((".", "/", "~")):
        raise UserError(f"text.encoder={name!r}: no such model folder; give a folder holding config.json and "
                        f"the weights, or a Hugging Face model name")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=_offline()))
    except Exception as exc:  # noqa: BLE001 - not cached and offline, no network, or no such model
        raise UserError(
            f"text.encoder={name!r}: the model is not available here ({type(exc).__name__}). Download it once "
            f"with `huggingface-cli download {name}` (or `python -c \"from transformers import AutoModel; "
            f"AutoModel.from_pretrained('{name}')\"`), or pass a local folder as text.encoder=/path/to/model"
        ) from None


def _fingerprint_files(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _FINGERPRINT_SUFFIXES):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _tiny_bert() -> PretrainedEncoder:
    from transformers import BertConfig

    from msabench.data import synth_text

    vocab = tuple(synth_text.VOCAB)
    config = BertConfig(vocab_size=len(vocab), pad_token_id=synth_text.SPECIAL_IDS["pad"], **TINY_BERT_SHAPE)
    fingerprint = hashlib.sha256(f"{TINY_BERT}|{TINY_BERT_SEED}|{sorted(TINY_BERT_SHAPE.items())}|"
                                 f"{vocab_sha256(vocab)}|torch{torch.__version__}".encode()).hexdigest()
    special = {k: synth_text.SPECIAL_IDS[k] for k in ("pad", "unk", "cls", "sep")}
    return PretrainedEncoder(TINY_BERT, None, config, None, vocab, special, fingerprint)


_CONFIG_ONLY: list[Any] = []  # set by `config_only`


@contextlib.contextmanager
def config_only(config: Any):
    """Within: every encoder but tiny-bert resolves to `config` with no files, weights or tokenizer
    (`msabench models --params` counts parameters on the meta device with bert-base-uncased's config)."""
    _CONFIG_ONLY.append(config)
    try:
        yield
    finally:
        _CONFIG_ONLY.pop()


def load_pretrained(name: str) -> PretrainedEncoder:
    """Config, tokenizer and fingerprint of an encoder (no weights loaded), once per process."""
    if _CONFIG_ONLY and name != TINY_BERT:
        special = {"pad": 0, "unk": 100, "cls": 101, "sep": 102}  # BERT's WordPiece layout
        return PretrainedEncoder(name, None, _CONFIG_ONLY[-1], None, (), special, "config-only")
    return _load_pretrained(name)


@functools.lru_cache(maxsize=8)
def _load_pretrained(name: str) -> PretrainedEncoder:
    if name == TINY_BERT:
        return _tiny_bert()
    from transformers import AutoConfig, AutoTokenizer

    folder = _resolve_folder(name)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"text.encoder={name!r}: {folder} is not a Hugging Face model folder ({exc}); "
                        f"it needs config.json, the weights and the tokenizer files") from None
    ids = tokenizer.get_vocab()
    vocab = tuple(t for t, _ in sorted(ids.items(), key=lambda kv: kv[1]))
    special = {"pad": tokenizer.pad_token_id, "unk": tokenizer.unk_token_id,
               "cls": tokenizer.cls_token_id, "sep": tokenizer.sep_token_id}
    missing = [k for k, v in special.items() if v is None]
    if missing:
        raise UserError(f"text.encoder={name!r}: its tokenizer has no {', '.join(missing)} token; msabench needs "
                        f"[PAD], [UNK], [CLS] and [SEP] (a BERT-style encoder)")
    return PretrainedEncoder(name, folder, config, tokenizer, vocab, {k: int(v) for k, v in special.items()},
                             _fingerprint_files(folder))


def _truncate(ids: np.ndarray, lengths: np.ndarray, max_length: int, sep_id: int) -> tuple[np.ndarray, np.ndarray]:
    if ids.shape[1] <= max_length:
        return ids, lengths
    out = np.array(ids[:, :max_length])
    cut = lengths > max_length
    out[cut, max_length - 1] = sep_id  # a truncated sequence still ends in [SEP], as the tokenizer does
    return out, np.minimum(lengths, max_length)


def token_ids(split, data, settings: EncoderSettings) -> tuple[np.ndarray, np.ndarray]:
    """(N, T) int64 ids in the encoder's vocabulary ([CLS] words [SEP], then padding) and (N,) lengths.

    The dataset's own ids when they are in the encoder's vocabulary (the synthetic suite with
    tiny-bert; MMSA pickles' `text_bert`, which is bert-base-uncased's), else its raw text through the
    encoder's tokenizer (label.csv, MELD's CSVs, the synthetic suite with a real encoder).
    """
    enc = load_pretrained(settings.name)
    if split.text_ids is not None:
        dataset_vocab = vocab_sha256(data.vocab) if data.vocab else BERT_BASE_UNCASED_VOCAB_SHA256
        if dataset_vocab == enc.vocab_sha256:
            lengths = np.asarray(split.text_lengths, dtype=np.int64)
            return _truncate(np.asarray(split.text_ids, dtype=np.int64), lengths, settings.max_length,
                             enc.special_ids["sep"])
        if not data.vocab:  # MMSA pickle: text_bert is all there is to encode, in another vocabulary
            raise UserError(
                f"{data.name}: its token ids (MMSA's text_bert) are in bert-base-uncased's vocabulary, but "
                f"text.encoder={settings.name!r} has another one ({len(enc.vocab)} tokens); use an encoder with "
                f"bert-base-uncased's vocabulary, or the dataset's label.csv (raw text, --set data.source=label-csv)")
    if split.raw_text is None or enc.tokenizer is None:
        what = "raw text" if split.raw_text is None else f"token ids in {settings.name}'s vocabulary"
        raise UserError(f"{data.name} has no {what} for text.encoder={settings.name!r}; "
                        + ("tiny-bert reads the synthetic suite's ids only: use a synth-* dataset or a real encoder"
                           if enc.tokenizer is None else "use text.encoder=features with its precomputed features"))
    if not split.raw_text:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    tok = enc.tokenizer(list(split.raw_text), max_length=settings.max_length, truncation=True, padding="max_length",
                        return_attention_mask=True, return_tensors="np")
    ids = np.asarray(tok["input_ids"], dtype=np.int64)
    lengths = np.asarray(tok["attention_mask"], dtype=np.int64).sum(axis=1)
    return ids, lengths


class TextEncoder(nn.Module):
    """(B, T) token ids + (B, T) bool mask -> ((B, T', D) vectors, (B, T') bool mask).

    T' = T for ``sequence`` pooling, 1 for ``cls`` / ``mean``. A frozen encoder has no trainable
    parameter and stays in eval mode (no dropout) whatever the model's mode.
    """

    def __init__(self, settings: EncoderSettings):
        super().__init__()
        self.settings = settings
        pretrained = load_pretrained(settings.name)
        n_layers = int(pretrained.config.num_hidden_layers)
        if not -(n_layers + 1) <= settings.layer <= n_layers:
            raise UserError(f"text.layer={settings.layer}: {settings.name} has hidden states 0 (embeddings) to "
                            f"{n_layers}; use one of those, or -1 for the last")
        self.special_ids = dict(pretrained.special_ids)
        self.out_dim = pretrained.hidden_size
        self.transformer = pretrained.build_module().to(DTYPES[settings.dtype])
        if settings.frozen:
            self.transformer.requires_grad_(False)
            self.transformer.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.settings.frozen:
            self.transformer.eval()
        return self

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ENCODER_PASSES["batches"] += 1
        ENCODER_PASSES["samples"] += int(ids.shape[0])
        layer = self.settings.layer
        out = self.transformer(input_ids=ids.long(), attention_mask=mask.long(),
                               output_hidden_states=layer != -1)
        hidden = out.last_hidden_state if layer == -1 else out.hidden_states[layer]  # (B, T, D)
        if self.settings.pooling == "sequence":
            return hidden, mask.bool()
        if self.settings.pooling == "cls":
            pooled = hidden[:, 0]  # (B, D)
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # (B, D)
        return pooled.unsqueeze(1), torch.ones(ids.shape[0], 1, dtype=torch.bool, device=ids.device)
