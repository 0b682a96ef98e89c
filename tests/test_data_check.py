"""`check_path` / `format_summary` (msabench data check), on fabricated files and ../shared/data."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from msabench.core.errors import UserError
from msabench.data.check import check_path, format_summary

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "MOSI" / "label.csv").is_file(), reason="../shared/data is absent")
SIZES = {"train": 5, "valid": 3, "test": 4}


def _mmsa(label: str = "regression", seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in SIZES.items():
        bert = np.zeros((n, 3, 6))
        bert[:, 0, :4] = [2, 7, 8, 3]
        bert[:, 1, :4] = 1
        d = {
            "id": [f"{split}-{i}" for i in range(n)],
            "text": rng.normal(size=(n, 6, 8)).astype(np.float32),
            "text_bert": bert,
            "audio": rng.normal(size=(n, 7, 3)).astype(np.float32),
            "vision": rng.normal(size=(n, 5, 4)).astype(np.float32),
            "audio_lengths": np.full(n, 7),
            "vision_lengths": np.arange(n) % 5 + 1,
        }
        if label == "regression":
            d["regression_labels"] = np.linspace(-3, 3, n).astype(np.float32)
        elif label == "classification":
            d["classification_labels"] = np.arange(n) % 3
        else:
            d["multilabel_labels"] = (rng.random((n, 4)) < 0.5).astype(np.float32)
        out[split] = d
    return out


def _dump(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def _meld(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    head = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID\n"
    for prefix, sents in (("train", "negative neutral positive "
                           "neutral"), ("dev", "neutral positive"), ("test", "negative negative positive")):
        rows = [f'{i},"hi, {i}",A,joy,{s},0,{i}\n' for i, s in enumerate(sents.split())]
        (folder / f"{prefix}_sent_emo.csv").write_text(head + "".join(rows), encoding="utf-8")


def _mult(path: Path) -> None:
    rng = np.random.default_rng(0)
    obj = {}
    for split, n in SIZES.items():
        hot = np.zeros((n, 4), dtype=np.int64)
        hot[:, 0] = 1
        obj[split] = {"text": rng.normal(size=(n, 3, 2)), "audio": rng.normal(size=(n, 4, 2)),
                      "vision": rng.normal(size=(n, 4, 2)), "labels": np.stack([1 - hot, hot], -1)}
    obj["train"]["audio"][0, 0, 0] = -np.inf
    _dump(path, obj)


@needs_shared
def test_real_mosi_label_csv():
    s = check_path(SHARED / "MOSI" / "label.csv", label_rule="round")
    (ds,) = s["datasets"]
    assert ds["name"] == "mosi" and ds["label_rule"] == "round"
    assert ds["sizes"] == {"train": 1284, "valid": 229, "test": 686}
    assert ds["splits"]["test"]["classes"] == {"negative": 347, "neutral": 106, "positive": 233}
    s = check_path(str(SHARED / "MOSI" / "label.csv"), label_rule="sign")
    assert s["datasets"][0]["splits"]["test"]["classes"] == {"negative": 379, "neutral": 30, "positive": 277}
    json.dumps(s)
    assert "379" in format_summary(s)


@needs_shared
def test_real_data_root():
    s = check_path(SHARED, label_rule="round")
    by_name = {d["name"]: d for d in s["datasets"]}
    assert set(by_name) == {"mosi", "meld"}
    meld = by_name["meld"]
    assert meld["sizes"] == {"train": 9989, "valid": 1109, "test": 2610}
    assert meld["splits"]["test"]["classes"] == {"negative": 833, "neutral": 1256, "positive": 521}
    assert meld["label_rule"] is None
    assert by_name["mosi"]["splits"]["test"]["classes"]["neutral"] == 106
    text = format_summary(s)
    assert "9989" in text and "2 datasets checked" in text
    # A dataset folder alone.
    assert [d["name"] for d in check_path(SHARED / "MELD")["datasets"]] == ["meld"]


@needs_shared
def test_real_meld_single_file():
    (ds,) = check_path(SHARED / "MELD" / "test_sent_emo.csv")["datasets"]
    assert ds["sizes"] == {"test": 2610}


def test_fabricated_root(tmp_path):
    _dump(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", _mmsa())
    _meld(tmp_path / "MELD")
    _mult(tmp_path / "IEMOCAP" / "iemocap_data_noalign.pkl")
    s = check_path(tmp_path, label_rule="sign")
    by_name = {d["name"]: d for d in s["datasets"]}
    assert set(by_name) == {"mosi", "meld", "iemocap"}
    mosi = by_name["mosi"]
    assert mosi["source"] == "MOSI/Processed/unaligned_50.pkl"
    assert mosi["modalities"]["a"] == {"kind": "features", "dim": 3, "max_len": 7}
    assert mosi["splits"]["train"]["classes"] == {"negative": 2, "neutral": 1, "positive": 2}
    assert mosi["splits"]["valid"]["lengths"]["v"] == {"min": 1, "mean": 2.0, "max": 3}
    assert by_name["meld"]["splits"]["valid"]["classes"] == {"negative": 0, "neutral": 1, "positive": 1}
    iem = by_name["iemocap"]
    # column 0 is MulT's Neutral
    assert iem["neg_inf_count"] == 1 and iem["splits"]["train"]["positives"]["neutral"] == 5
    assert len(mosi["data_hash"]) == 16
    json.dumps(s)
    text = format_summary(s)
    assert "iemocap" in text and "audio -inf set to 0: 1" in text and "3 datasets checked" in text


def test_single_files(tmp_path):
    p = _dump(tmp_path / "MOSEI" / "Processed" / "aligned_50.pkl", _mmsa())
    (ds,) = check_path(p)["datasets"]
    assert ds["name"] == "mosei" and ds["sizes"] == SIZES
    _mult(tmp_path / "iemocap_data_noalign.pkl")
    (ds,) = check_path(tmp_path / "iemocap_data_noalign.pkl")["datasets"]
    assert ds["label_kind"] == "multilabel"


def test_synthetic_folder(tmp_path):
    folder = tmp_path / "synth-meld-abc"
    _dump(folder / "data.pkl", _mmsa("classification"))
    (folder / "meta.json").write_text(json.dumps({"name": "synth-meld", "family": "meld"}))
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\ngood\n")
    for path in (folder / "data.pkl", folder, tmp_path):
        (ds,) = check_path(path)["datasets"]
        assert ds["name"] == "synth-meld" and ds["synthetic"] and ds["label_kind"] == "classification"
        assert ds["vocab_size"] == 5 and ds["modalities"]["t"]["token_ids"]
        assert ds["splits"]["train"]["classes"] == {"negative": 2, "neutral": 2, "positive": 1}
    folder2 = tmp_path / "x" / "synth-iemocap-1"
    _dump(folder2 / "data.pkl", _mmsa("multilabel"))
    (folder2 / "meta.json").write_text(json.dumps({"name": "synth-iemocap"}))
    (ds,) = check_path(folder2 / "data.pkl")["datasets"]
    assert ds["family"] == "iemocap" and ds["label_kind"] == "multilabel"
    (folder2 / "meta.json").write_text("{not json")
    with pytest.raises(UserError, match="meta.json is not readable JSON"):
        check_path(folder2 / "data.pkl")


def test_real_synth_folder_if_available(tmp_path):
    synth = pytest.importorskip("msabench.data.synth")
    synth.generate("synth-mosi", seed=0, scale=0.02, dest=tmp_path, mmsa_pickle=True)
    pkls = sorted(tmp_path.rglob("data.pkl"))
    assert pkls, "generate(mmsa_pickle=True) wrote no data.pkl"
    (ds,) = check_path(pkls[0])["datasets"]
    assert ds["synthetic"] and ds["family"] == "mosi"
    (from_arrays,) = check_path(pkls[0].parent)["datasets"]  # the folder: read from its arrays, as runs do
    assert from_arrays["splits"] == ds["splits"]


def test_features_npz(tmp_path):
    mosi = tmp_path / "MOSI"
    mosi.mkdir()
    (mosi / "label.csv").write_text(
        "video_id,clip_id,text,label,annotation,mode\n"
        + "".join(f"v,{i},t{i},{i - 2},x,{s}\n" for i, s in enumerate(["train", "train", "valid", "test", "test"])),
        encoding="utf-8",
    )
    ids = [f"v$_${i}" for i in range(5)]
    np.savez(mosi / "features.npz", id=np.array(ids), audio=np.zeros((5, 3, 2), np.float32),
             audio_lengths=np.array([3, 2, 1, 3, 3]))
    (ds,) = check_path(mosi / "features.npz")["datasets"]
    assert ds["name"] == "mosi" and ds["modalities"]["a"]["dim"] == 2 and ds["sizes"]["test"] == 2
    (ds,) = check_path(mosi / "label.csv")["datasets"]  # the csv alone
    assert "a" not in ds["modalities"]
    (ds,) = check_path(tmp_path)["datasets"]  # root: csv + npz
    assert ds["modalities"]["a"]["max_len"] == 3
    alone = tmp_path / "other" / "features.npz"
    alone.parent.mkdir()
    vision = np.zeros((4, 6), np.float32)
    np.savez(alone, id=np.array(["a", "b", "c", "d"]), vision=vision)
    (ds,) = check_path(alone)["datasets"]
    assert ds["sizes"] == {"all": 4} and ds["modalities"]["v"] == {"kind": "features", "dim": 6, "max_len": 1}
    vision[2, 3] = np.nan
    np.savez(alone, id=np.array(["a", "b", "c", "d"]), vision=vision)
    with pytest.raises(UserError, match="vision contains NaN"):
        check_path(alone)


def test_check_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        check_path(tmp_path / "nope.pkl")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not a data file"):
        check_path(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no dataset found"):
        check_path(empty)
    with pytest.raises(UserError, match="unknown label rule"):
        check_path(tmp_path, label_rule="nearest")
    bad = tmp_path / "MOSI" / "label.csv"
    bad.parent.mkdir()
    bad.write_text("id,text\n1,hi\n")
    with pytest.raises(UserError, match="lacks the column"):
        check_path(tmp_path)
    _meld(tmp_path / "root2" / "MELD")
    (tmp_path / "root2" / "MELD" / "dev_sent_emo.csv").unlink()
    with pytest.raises(UserError, match="MELD/dev_sent_emo.csv under .* not found.*declare-lab"):
        check_path(tmp_path / "root2")
