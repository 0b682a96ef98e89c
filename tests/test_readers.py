"""Readers, the restricted unpickler, validation and the dataset registry, on small fabricated files."""

from __future__ import annotations

import collections
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from msabench.core.errors import UserError
from msabench.data import readers, safe_pickle
from msabench.data.container import SPLITS, DatasetData, SplitData
from msabench.data.datasets import DATASETS, load_dataset, resolve_data_root
from msabench.data.validate import validate_dataset

SIZES = {"train": 6, "valid": 4, "test": 5}


# ------------------------------------------------------------------------------ fabrication
def mmsa_dict(*, sims: bool = False, aligned: bool = False, seed: int = 0, t_len: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    lo, hi = (-1.0, 1.0) if sims else (-3.0, 3.0)
    a_len, v_len = (t_len, t_len) if aligned else (10, 12)
    out = {}
    for split, n in SIZES.items():
        text_len = rng.integers(3, t_len + 1, size=n)
        bert = np.zeros((n, 3, t_len), dtype=np.float64)
        for i, k in enumerate(text_len):
            bert[i, 0, :k] = [101] + list(rng.integers(1000, 2000, size=k - 2)) + [102]
            bert[i, 1, :k] = 1
        d = {
            "id": np.array([f"vid{split}{i // 2}$_${i % 2}" for i in range(n)], dtype=object),
            "raw_text": np.array([f"text {split} {i}" for i in range(n)]),
            "text": rng.normal(size=(n, t_len, 16)).astype(np.float32),
            "text_bert": bert,
            "audio": rng.normal(size=(n, a_len, 5)).astype(np.float32),
            "vision": rng.normal(size=(n, v_len, 7)).astype(np.float32),
            "regression_labels": np.round(rng.uniform(lo, hi, size=n), 1).astype(np.float32),
            "classification_labels": rng.integers(0, 3, size=n).astype(np.float64),
        }
        if not aligned:
            d["audio_lengths"] = list(rng.integers(1, a_len + 1, size=n))
            d["vision_lengths"] = list(rng.integers(1, v_len + 1, size=n))
        if sims:
            for m in "TAV":
                d[f"regression_labels_{m}"] = np.round(rng.uniform(-1, 1, size=n), 1)
        out[split] = d
    return out


def write_pickle(path: Path, obj: object, protocol: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


def mult_dict(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in SIZES.items():
        hot = rng.integers(0, 2, size=(n, 4))
        labels = np.stack([1 - hot, hot], axis=-1).astype(np.float32)  # (N, 4, 2) one-hot
        out[split] = {
            "text": rng.normal(size=(n, 6, 12)).astype(np.float32),
            "audio": rng.normal(size=(n, 9, 4)).astype(np.float32),
            "vision": rng.normal(size=(n, 7, 3)).astype(np.float32),
            "labels": labels,
        }
    return out


LABEL_HEADER = "video_id,clip_id,text,label,annotation,mode\n"


def write_label_csv(path: Path, rows: list[tuple] | None = None) -> Path:
    if rows is None:
        rows = []
        for split, n in SIZES.items():
            for i in range(n):
                rows.append((f"v{split}", i, f'"it was, ""good"" {i}"', round(-2.5 + i * 0.5, 2), "x", split))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = LABEL_HEADER + "".join(",".join(str(c) for c in r) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path


MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
MELD_SENTS = ("negative", "neutral", "positive")


def write_meld(folder: Path, sizes: dict[str, int] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sizes = sizes or {"train": 7, "dev": 4, "test": 5}
    for prefix, n in sizes.items():
        lines = [MELD_HEADER]
        for i in range(n):
            # (Dialogue_ID, Utterance_ID) pairs repeat across the files, as in MELD.
            lines.append(f'{i + 1},"Oh, ""really""? {prefix} '
                         f'{i}",Joey,joy,{MELD_SENTS[i % 3]},{i // 3},{i % 3},1,1,"00:00:01,000","00:00:02,000"\n')
        (folder / f"{prefix}_sent_emo.csv").write_text("".join(lines), encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------ safe pickle
class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _EvilSystem:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("cls", [_Evil, _EvilSystem])
def test_malicious_pickle_refused_and_nothing_runs(tmp_path, cls):
    marker = tmp_path / "pwned"
    path = write_pickle(tmp_path / "evil.pkl", {"train": {"id": [cls(str(marker))]}})
    with pytest.raises(UserError) as err:
        safe_pickle.load(path)
    assert not marker.exists()
    msg = str(err.value)
    assert "evil.pkl" in msg and ("open" in msg or "system" in msg)
    # The same through a reader.
    with pytest.raises(UserError):
        readers.read_mmsa_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_safe_pickle_reads_numpy_and_plain_data(tmp_path, protocol):
    obj = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "s": np.float32(1.5),
        "u": np.array(["ab", "c"]),
        "o": np.array(["x", 1], dtype=object),
        "l": [1, 2.5, "x", b"by", None, True, (1, 2)],
        "set": {1, 2},
        "od": collections.OrderedDict(k=1),
    }
    path = write_pickle(tmp_path / "ok.pkl", obj, protocol=protocol)
    back = safe_pickle.load(path)
    assert np.array_equal(back["a"], obj["a"]) and back["a"].dtype == np.float32
    assert back["s"] == np.float32(1.5)
    assert back["u"].tolist() == ["ab", "c"] and back["o"].tolist() == ["x", 1]
    assert back["l"] == obj["l"] and back["set"] == {1, 2} and back["od"] == {"k": 1}


def test_safe_pickle_truncated_and_corrupt(tmp_path):
    good = pickle.dumps({"a": np.zeros((50, 50), dtype=np.float32)}, protocol=4)
    (tmp_path / "trunc.pkl").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="trunc.pkl.*truncated or corrupt"):
        safe_pickle.load(tmp_path / "trunc.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"this is not a pickle at all")
    with pytest.raises(UserError, match="junk.pkl"):
        safe_pickle.load(tmp_path / "junk.pkl")
    with pytest.raises(UserError, match="does not exist"):
        safe_pickle.load(tmp_path / "nope.pkl")


def test_safe_pickle_codecs_only_latin1():
    ok = b"\x80\x02c_codecs\nencode\nq\x00X\x02\x00\x00\x00abq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04."
    assert safe_pickle.loads(ok) == b"ab"
    bad = ok.replace(b"X\x06\x00\x00\x00latin1", b"X\x04\x00\x00\x00zlib")
    with pytest.raises(UserError):
        safe_pickle.loads(bad)


# ------------------------------------------------------------------------------ MMSA pickles
def test_mmsa_pickle_reader(tmp_path):
    src = mmsa_dict()
    path = write_pickle(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", src)
    data = readers.read_mmsa_pickle(path)
    assert isinstance(data, DatasetData)
    assert (data.name, data.family, data.label_kind, data.synthetic) == ("mosi", "mosi", "regression", False)
    assert {s: len(data.splits[s]) for s in SPLITS} == SIZES
    assert data.dims() == {"t": 16, "a": 5, "v": 7}
    assert data.max_lens() == {"t": 8, "a": 10, "v": 12}
    tr = data.splits["train"]
    assert tr.ids.tolist() == [str(x) for x in src["train"]["id"]]
    assert tr.text_ids.dtype == np.int64 and tr.text_ids[0, 0] == 101
    assert tr.text_lengths.tolist() == src["train"]["text_bert"][:, 1].sum(1).astype(int).tolist()
    assert tr.audio_lengths.tolist() == [int(x) for x in src["train"]["audio_lengths"]]
    assert tr.regression.dtype == np.float32 and tr.regression.shape == (6,)
    assert tr.classification is None  # classes come from the label rule
    assert tr.raw_text[0] == "text train 0"
    assert len(data.data_hash) == 16
    # Same bytes, same hash; other bytes, other hash.
    assert readers.read_mmsa_pickle(path).data_hash == data.data_hash
    src["test"]["regression_labels"][0] = 0.0
    write_pickle(path, src)
    assert readers.read_mmsa_pickle(path).data_hash != data.data_hash


def test_mmsa_aligned_without_lengths(tmp_path):
    path = write_pickle(tmp_path / "MOSI" / "Processed" / "aligned_50.pkl", mmsa_dict(aligned=True))
    data = readers.read_mmsa_pickle(path)
    tr = data.splits["train"]
    assert np.array_equal(tr.audio_lengths, tr.text_lengths)
    assert data.max_lens() == {"t": 8, "a": 8, "v": 8}


def test_sims_unimodal_and_range(tmp_path):
    src = mmsa_dict(sims=True)
    path = write_pickle(tmp_path / "SIMS" / "Processed" / "unaligned_39.pkl", src)
    data = readers.read_mmsa_pickle(path)
    assert data.family == "sims"
    assert set(data.splits["valid"].unimodal) == {"t", "a", "v"}
    src["valid"]["regression_labels"][1] = 1.5
    write_pickle(path, src)
    with pytest.raises(UserError, match=r"1\.5 is outside \[-1, 1\]"):
        readers.read_mmsa_pickle(path)


def test_mosi_label_range(tmp_path):
    src = mmsa_dict()
    src["train"]["regression_labels"][2] = 3.4
    path = write_pickle(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", src)
    with pytest.raises(UserError, match=r"outside \[-3, 3\]"):
        readers.read_mmsa_pickle(path)


def test_audio_neg_inf_zeroed_and_counted(tmp_path):
    src = mmsa_dict()
    src["train"]["audio"][0, 1, 2] = -np.inf
    src["test"]["audio"][3, 0, :] = -np.inf
    data = readers.read_mmsa_pickle(write_pickle(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", src))
    assert data.neg_inf_count == 1 + 5
    assert data.splits["train"].audio[0, 1, 2] == 0.0
    assert np.isfinite(data.splits["test"].audio).all()


@pytest.mark.parametrize(
    "split,key,index,value,match",
    [
        ("train", "text", (0, 0, 0), np.nan, "text contains NaN"),
        ("valid", "vision", (1, 2, 3), np.nan, "vision contains NaN"),
        ("test", "audio", (0, 0, 0), np.inf, r"audio contains \+inf"),
        ("train", "vision", (2, 1, 0), -np.inf, "vision contains -inf"),
        ("train", "text", (0, 1, 1), -np.inf, "text contains -inf"),
        ("train", "audio", (0, 1, 1), np.nan, "audio contains NaN"),
        ("valid", "regression_labels", (0,), np.nan, "regression labels contains NaN"),
    ],
)
def test_nonfinite_values_rejected(tmp_path, split, key, index, value, match):
    src = mmsa_dict()
    src[split][key][index] = value
    path = write_pickle(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", src)
    with pytest.raises(UserError, match=match) as err:
        readers.read_mmsa_pickle(path)
    assert "unaligned_50.pkl" in str(err.value) and split in str(err.value)


def test_length_above_t_rejected(tmp_path):
    src = mmsa_dict()
    src["valid"]["vision_lengths"][2] = 13  # vision T = 12
    path = write_pickle(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", src)
    with pytest.raises(UserError, match=r"vision_lengths\[2\] = 13 exceeds the padded length 12"):
        readers.read_mmsa_pickle(path)


def test_lengths_count_mismatch_rejected(tmp_path):
    src = mmsa_dict()
    src["train"]["audio_lengths"] = src["train"]["audio_lengths"][:-1]
    path = write_pickle(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", src)
    with pytest.raises(UserError, match="audio_lengths has shape"):
        readers.read_mmsa_pickle(path)


def test_duplicate_ids_rejected(tmp_path):
    src = mmsa_dict()
    src["test"]["id"][0] = src["train"]["id"][0]
    path = write_pickle(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", src)
    with pytest.raises(UserError, match="occur more than once"):
        readers.read_mmsa_pickle(path)


def test_empty_split_rejected(tmp_path):
    src = mmsa_dict()
    src["valid"] = {k: (v[:0] if hasattr(v, "shape") else v[:0]) for k, v in src["valid"].items()}
    path = write_pickle(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", src)
    with pytest.raises(UserError, match=r"\[valid\] is empty"):
        readers.read_mmsa_pickle(path)


@pytest.mark.parametrize("key", ["audio", "id", "vision_lengths", "regression_labels"])
def test_missing_key_rejected(tmp_path, key):
    src = mmsa_dict()
    del src["test"][key]
    if key == "regression_labels":
        del src["test"]["classification_labels"]
    path = write_pickle(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", src)
    with pytest.raises(UserError, match=f"lacks '{key}'"):
        readers.read_mmsa_pickle(path)


def test_bad_layouts_rejected(tmp_path):
    p = write_pickle(tmp_path / "a.pkl", [1, 2, 3])
    with pytest.raises(UserError, match="not a dict of splits"):
        readers.read_mmsa_pickle(p)
    src = mmsa_dict()
    del src["valid"]
    p = write_pickle(tmp_path / "b.pkl", src)
    with pytest.raises(UserError, match="lacks 'valid'"):
        readers.read_mmsa_pickle(p)
    src = mmsa_dict()
    src["train"]["audio"] = src["train"]["audio"][:, :, 0]
    p = write_pickle(tmp_path / "c.pkl", src)
    with pytest.raises(UserError, match="audio has shape"):
        readers.read_mmsa_pickle(p)


def test_validate_read_only_audio_is_copied():
    audio = np.zeros((3, 4, 2), dtype=np.float32)
    audio[1, 2, 0] = -np.inf
    audio.setflags(write=False)
    split = SplitData(ids=np.array(["a", "b", "c"]), regression=np.zeros(3, np.float32), audio=audio,
                      audio_lengths=np.array([4, 4, 1]))
    data = DatasetData(name="x", family="mosi", splits={"train": split}, label_kind="regression",
                       synthetic=False, data_hash="h")
    validate_dataset(data, splits=["train"])
    assert data.neg_inf_count == 1 and split.audio[1, 2, 0] == 0 and audio[1, 2, 0] == -np.inf


# ------------------------------------------------------------------------------ MulT IEMOCAP
def test_mult_iemocap_reader(tmp_path):
    src = mult_dict()
    path = write_pickle(tmp_path / "IEMOCAP" / "iemocap_data_noalign.pkl", src)
    data = readers.read_mult_pickle(path)
    assert data.label_kind == "multilabel" and data.family == "iemocap"
    va = data.splits["valid"]
    assert va.multilabel.shape == (4, 4)
    assert np.array_equal(va.multilabel, src["valid"]["labels"][..., 1])
    assert va.ids.tolist() == ["valid_0", "valid_1", "valid_2", "valid_3"]
    assert data.dims() == {"t": 12, "a": 4, "v": 3}
    assert va.audio_lengths.tolist() == [9] * 4


def test_mult_bad_inputs(tmp_path):
    src = mult_dict()
    del src["test"]["labels"]
    with pytest.raises(UserError, match="lacks 'labels'"):
        readers.read_mult_pickle(write_pickle(tmp_path / "a.pkl", src))
    src = mult_dict()
    src["train"]["labels"] = src["train"]["labels"][:, :3]
    with pytest.raises(UserError, match=r"expected \(N, 4, 2\)"):
        readers.read_mult_pickle(write_pickle(tmp_path / "b.pkl", src))
    src = mult_dict()
    src["train"]["vision"][0, 0, 0] = -np.inf
    with pytest.raises(UserError, match="vision contains -inf"):
        readers.read_mult_pickle(write_pickle(tmp_path / "c.pkl", src))


# ------------------------------------------------------------------------------ label.csv
def test_label_csv_reader(tmp_path):
    path = write_label_csv(tmp_path / "MOSI" / "label.csv")
    data = readers.read_label_csv(path)
    assert data.name == "mosi" and data.label_kind == "regression"
    assert {s: len(data.splits[s]) for s in SPLITS} == SIZES
    tr = data.splits["train"]
    assert tr.ids[1] == "vtrain$_$1"
    assert tr.raw_text[0] == 'it was, "good" 0'
    assert tr.regression.tolist() == pytest.approx([-2.5, -2.0, -1.5, -1.0, -0.5, 0.0])
    assert tr.text_feats is None and tr.audio is None
    assert data.dims() == {}


def test_label_csv_with_features_npz(tmp_path):
    path = write_label_csv(tmp_path / "MOSI" / "label.csv")
    plain_hash = readers.read_label_csv(path).data_hash
    ids = [f"v{s}$_${i}" for s, n in SIZES.items() for i in range(n)]
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(ids))
    n = len(ids)
    audio = rng.normal(size=(n, 6, 3)).astype(np.float32)
    audio[0, 0, 0] = -np.inf
    np.savez(
        tmp_path / "MOSI" / "features.npz",
        id=np.array(ids)[perm],
        text=rng.normal(size=(n, 4)).astype(np.float32),  # (N, D): one step
        audio=audio[perm],
        audio_lengths=np.arange(n)[perm] % 6 + 1,
    )
    data = readers.read_label_csv(path)
    assert data.data_hash != plain_hash
    te = data.splits["test"]
    assert te.text_feats.shape == (5, 1, 4) and te.text_lengths.tolist() == [1] * 5
    rows = [ids.index(f"vtest$_${i}") for i in range(5)]
    assert np.array_equal(te.audio, audio[rows])
    assert te.audio_lengths.tolist() == [r % 6 + 1 for r in rows]
    assert data.neg_inf_count == 1  # train row 0
    assert data.dims() == {"t": 4, "a": 3}
    # An npz that misses ids of the labels file.
    np.savez(tmp_path / "MOSI" / "features.npz", id=np.array(ids[:-1]), audio=audio[:-1])
    with pytest.raises(UserError, match="no features for 1 test ids"):
        readers.read_label_csv(path)
    # Ids stored as objects.
    np.savez(tmp_path / "MOSI" / "features.npz", id=np.array(ids, dtype=object), audio=audio)
    with pytest.raises(UserError, match="stores Python objects"):
        readers.read_label_csv(path)


def test_label_csv_wrong_columns(tmp_path):
    p = tmp_path / "label.csv"
    p.write_text("video,clip,text,score,mode\nA,1,hi,0.5,train\n", encoding="utf-8")
    with pytest.raises(UserError, match="label.csv lacks the column.*video_id, clip_id, label"):
        readers.read_label_csv(p)


def test_label_csv_not_utf8(tmp_path):
    p = tmp_path / "label.csv"
    p.write_bytes((LABEL_HEADER + "A,1,caf\xe9,0.5,x,train\n").encode("cp1252"))
    with pytest.raises(UserError, match=r"not UTF-8 \(byte 0xe9 on line 2\)"):
        readers.read_label_csv(p)


def test_label_csv_bad_rows(tmp_path):
    p = write_label_csv(tmp_path / "l1.csv", [("A", 1, "hi", 0.5, "x", "training")])
    with pytest.raises(UserError, match="mode 'training' is not train, valid or test"):
        readers.read_label_csv(p)
    p = write_label_csv(tmp_path / "l2.csv", [("A", 1, "hi", "pos", "x", "train")])
    with pytest.raises(UserError, match="label value 'pos' is not a number"):
        readers.read_label_csv(p)
    rows = [("A", i, "hi", 0.5, "x", s) for i, s in enumerate(["train", "test"])]
    p = write_label_csv(tmp_path / "l3.csv", rows)
    with pytest.raises(UserError, match=r"\[valid\] is empty"):
        readers.read_label_csv(p)
    rows = [("A", 1, "hi", 0.5, "x", "train"), ("A", 1, "again", 0.5, "x", "valid"), ("B", 1, "x", 0, "x", "test")]
    p = write_label_csv(tmp_path / "l4.csv", rows)
    with pytest.raises(UserError, match="'A\\$_\\$1'"):
        readers.read_label_csv(p)


# ------------------------------------------------------------------------------ MELD
def test_meld_reader(tmp_path):
    folder = write_meld(tmp_path / "MELD")
    data = readers.read_meld(folder)
    assert data.label_kind == "classification" and data.family == "meld"
    assert {s: len(data.splits[s]) for s in SPLITS} == {"train": 7, "valid": 4, "test": 5}
    va = data.splits["valid"]
    assert va.ids[:2].tolist() == ["dev_dia0_utt0", "dev_dia0_utt1"]
    assert data.splits["train"].ids[0] == "train_dia0_utt0"  # same pair, other file: no clash
    assert va.classification.tolist() == [0, 1, 2, 0]
    assert va.raw_text[0] == 'Oh, "really"? dev 0'


def test_meld_features_npz(tmp_path):
    folder = write_meld(tmp_path / "MELD")
    ids = [f"{p}_dia{i // 3}_utt{i % 3}" for p, n in (("train", 7), ("dev", 4), ("test", 5)) for i in range(n)]
    vision = np.arange(len(ids) * 2 * 3, dtype=np.float32).reshape(len(ids), 2, 3)
    np.savez(folder / "features.npz", id=np.array(ids[::-1]), vision=vision[::-1])
    data = readers.read_meld(folder)
    assert np.array_equal(data.splits["test"].vision, vision[11:])
    assert data.splits["test"].vision_lengths.tolist() == [2] * 5


def test_meld_bad_inputs(tmp_path):
    folder = write_meld(tmp_path / "MELD")
    p = folder / "test_sent_emo.csv"
    p.write_text(MELD_HEADER + '1,hi,Joey,joy,happy,0,0,1,1,"a","b"\n', encoding="utf-8")
    with pytest.raises(UserError, match="Sentiment 'happy' is not negative, neutral or positive"):
        readers.read_meld(folder)
    p.write_text("Utterance,Speaker,Emotion\nhi,Joey,joy\n", encoding="utf-8")
    with pytest.raises(UserError, match="test_sent_emo.csv lacks the column.*Sentiment"):
        readers.read_meld(folder)
    p.write_bytes((MELD_HEADER + '1,don\x92t,Joey,joy,neutral,0,0,1,1,"a","b"\n').encode("latin-1"))
    with pytest.raises(UserError, match="test_sent_emo.csv is not UTF-8"):
        readers.read_meld(folder)
    p.unlink()
    with pytest.raises(UserError, match="test_sent_emo.csv does not exist"):
        readers.read_meld(folder)


# ------------------------------------------------------------------------------ registry / load_dataset
def test_registry_names_and_info():
    names = DATASETS.names()
    for n in ("mosi", "mosei", "sims", "meld", "iemocap", "synth-mosi", "synth-dg"):
        assert n in names
    info = DATASETS.get("mosi")
    assert info.family == "mosi" and info.label_kind == "regression" and not info.synthetic
    assert info.files["pkl"] == ("MOSI/Processed/unaligned_50.pkl",)
    assert "MMSA" in info.origin["pkl"]
    assert DATASETS.get("iemocap").label_kind == "multilabel"
    assert "declare-lab/MELD" in DATASETS.get("meld").origin["label-csv"]
    assert DATASETS.get("synth-mosi").synthetic
    with pytest.raises(UserError, match="Did you mean: mosi"):
        DATASETS.get("mosii")
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("mosii")


def test_real_name_needs_data_root(monkeypatch):
    monkeypatch.delenv("MSABENCH_DATA_ROOT", raising=False)
    with pytest.raises(UserError, match="pass --data-root"):
        load_dataset("mosi")
    assert resolve_data_root(None) is None


def test_data_root_from_env_and_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MSABENCH_DATA_ROOT", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    with pytest.raises(UserError) as err:
        load_dataset("mosi")
    msg = str(err.value)
    assert "MOSI/Processed/unaligned_50.pkl" in msg and "MMSA" in msg and "--data-root" in msg
    with pytest.raises(UserError) as err:
        load_dataset("iemocap", source="pkl")
    assert "IEMOCAP/iemocap_data_noalign.pkl" in str(err.value) and "MulT" in str(err.value)
    with pytest.raises(UserError, match="is not a folder"):
        resolve_data_root(tmp_path / "nope")


def test_load_dataset_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("MSABENCH_DATA_ROOT", raising=False)
    write_label_csv(tmp_path / "MOSI" / "label.csv")
    csv_data = load_dataset("mosi", data_root=tmp_path)  # auto: no pickle, label.csv
    assert csv_data.source == "MOSI/label.csv" and csv_data.splits["train"].audio is None
    write_pickle(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", mmsa_dict())
    pkl_data = load_dataset("mosi", data_root=tmp_path)  # auto: the pickle now
    assert pkl_data.source == "MOSI/Processed/unaligned_50.pkl" and pkl_data.splits["train"].audio is not None
    assert pkl_data.data_hash != csv_data.data_hash
    assert load_dataset("mosi", data_root=tmp_path, source="label-csv").data_hash == csv_data.data_hash
    with pytest.raises(UserError, match="aligned_50.pkl"):
        load_dataset("mosi", data_root=tmp_path, source="aligned")
    write_pickle(tmp_path / "MOSI" / "Processed" / "aligned_50.pkl", mmsa_dict(aligned=True))
    assert load_dataset("mosi", data_root=tmp_path, aligned=True).source.endswith("aligned_50.pkl")
    with pytest.raises(UserError, match="Did you mean: label-csv"):
        load_dataset("mosi", data_root=tmp_path, source="label_csv")
    with pytest.raises(UserError, match="no 'pkl' layout"):
        load_dataset("meld", data_root=tmp_path, source="pkl")
    small = load_dataset("mosi", data_root=tmp_path, scale=0.5)
    assert len(small.splits["train"]) == 3 and small.data_hash != pkl_data.data_hash
    assert small.splits["train"].audio.shape[0] == 3 and len(small.splits["train"].raw_text) == 3
    write_meld(tmp_path / "MELD")
    assert load_dataset("meld", data_root=tmp_path).label_kind == "classification"
    write_pickle(tmp_path / "IEMOCAP" / "iemocap_data_noalign.pkl", mult_dict())
    assert load_dataset("iemocap", data_root=tmp_path).label_kind == "multilabel"


def test_synthetic_name_never_reads_data_root(tmp_path, monkeypatch):
    calls = []

    def fake_load_synth(name, *, seed=0, scale=1.0, aligned=False, noise_modality=None, dest=None):
        calls.append((name, seed, scale, aligned, noise_modality))
        return "synthetic"

    DATASETS.names()  # populate the registry before the fake module stands in for synth.py
    fake = types.ModuleType("msabench.data.synth")
    fake.load_synth = fake_load_synth
    fake.synth_names = lambda: ["synth-mosi"]
    monkeypatch.setitem(sys.modules, "msabench.data.synth", fake)
    monkeypatch.setenv("MSABENCH_DATA_ROOT", str(tmp_path / "does-not-exist"))
    # A real-looking root that would be picked up if anything fell through.
    write_label_csv(tmp_path / "MOSI" / "label.csv")
    out = load_dataset("synth-mosi", data_root=tmp_path, seed=3, scale=0.1, noise_modality="a")
    assert out == "synthetic" and calls == [("synth-mosi", 3, 0.1, False, "a")]
    with pytest.raises(UserError, match="no label.csv form"):
        load_dataset("synth-mosi", source="label-csv")
