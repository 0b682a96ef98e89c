"""A researcher's own corpus registered from a card (dataset.toml): by path or by name under the data
root, trained by `standard`, reported under its own name; bad cards and files exit 2 with one line."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from msabench.cli import main
from msabench.core.errors import UserError
from msabench.data.datasets import DATASETS, load_dataset, registered_cards
from msabench.data.readers_common import files_hash

SIZES = {"train": 24, "valid": 8, "test": 8}
CARD = """name = "talkshow"
description = "a fabricated corpus (tests)"
family = "mosi"
layout = "label-csv"
label_range = [-2, 2]

[files]
labels = "label.csv"
features = "features.npz"

[dims]
t = 6
a = 3
"""


@pytest.fixture(autouse=True)
def _forget_cards():
    """Cards register process-wide; each test starts without the previous tests' ones."""
    yield
    for name in registered_cards():
        DATASETS._items.pop(name)


def write_corpus(folder: Path, card: str = CARD, seed: int = 0) -> Path:
    """label.csv (scores in [-2, 2] in half steps), features.npz (text 4 x 6, audio 3) and the card."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids, text, audio = [], [], []
    with open(folder / "label.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "clip_id", "text", "label", "annotation", "mode"])
        for split, n in SIZES.items():
            for i in range(n):
                score = float(rng.integers(-4, 5)) / 2
                writer.writerow([f"{split}{i}", "1", f"utterance {i}", score, "-", split])
                ids.append(f"{split}{i}$_$1")
                vec = rng.standard_normal((4, 6)).astype(np.float32)
                vec[:, 0] += score
                text.append(vec)
                audio.append(rng.standard_normal(3).astype(np.float32))
    np.savez(folder / "features.npz", id=np.array(ids), text=np.stack(text), audio=np.stack(audio))
    (folder / "dataset.toml").write_text(card)
    return folder


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


RUN = ("run", "--protocol", "standard", "--model", "constant", "--model", "linear_probe", "--seeds", "1",
       "--modalities", "t,a", "--tiny", "--no-mlflow")


def test_card_by_path_runs_standard_and_reports_its_name(capsys, tmp_path):
    folder = write_corpus(tmp_path / "corpora" / "talkshow")
    out = tmp_path / "runs"
    code, _, err = cli(capsys, *RUN, "--dataset", str(folder), "--out", str(out))
    assert code == 0, err
    specs = [json.loads(p.read_text()) for p in out.glob("runs/*/spec.json")]
    assert len(specs) == 2 and {tuple(s["datasets"]) for s in specs} == {("talkshow",)}
    # the same hash as any real file: its bytes (label.csv, then features.npz)
    assert specs[0]["data_hashes"] == [files_hash([folder / "label.csv", folder / "features.npz"])]
    code, text, err = cli(capsys, "report", "--out", str(out))
    assert code == 0, err
    assert "### standard on talkshow" in text and "real data" in text
    row = next(line for line in text.splitlines() if line.startswith("| linear_probe"))
    assert row.count("|") == 10 and " - |" not in row.split("|", 3)[3]  # every metric column filled
    # by name under the data root: the same runs (done, so skipped)
    code, text, err = cli(capsys, *RUN, "--dataset", "TalkShow", "--data-root", str(tmp_path / "corpora"),
                          "--out", str(out))
    assert code == 0, err
    assert "skipped 2" in text


def test_card_by_name_is_found_in_any_folder_and_misspelt_names_get_close_matches(capsys, tmp_path):
    write_corpus(tmp_path / "root" / "folder-with-another-name")
    data = load_dataset("talkshow", data_root=tmp_path / "root")
    assert data.name == "talkshow" and data.family == "mosi" and not data.synthetic
    assert data.dims() == {"t": 6, "a": 3} and len(data.splits["train"]) == 24
    code, _, err = cli(capsys, *RUN, "--dataset", "talkshw", "--data-root", str(tmp_path / "root"), "--dry-run")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "Did you mean: talkshow?" in err


@pytest.mark.parametrize("edit, says", [
    (("a = 3", "a = 4"), "audio features are 3-d but"),
    (("t = 6\na = 3\n", "t = 6\n"), "hold 3-d audio features but"),
    (("label_range = [-2, 2]", "label_range = [-1, 1]"), "is outside [-1, 1], the label_range of"),
    (("family = \"mosi\"", "family = \"mosii\""), "Did you mean: mosi"),
    (("[dims]", "[dim]"), "unknown key 'dim'"),
    (("layout = \"label-csv\"", "layout = \"csv\""), "layout 'csv' is not one of"),
    (("features = \"features.npz\"", "features = \"../features.npz\""), "inside it"),
    (("label_range = [-2, 2]", "classes = [\"neg\", \"pos\"]"), "three sentiment classes"),
    (("name = \"talkshow\"", "name = \"synth-talk\""), "is not allowed"),
])
def test_a_wrong_card_exits_2_with_one_line_and_no_store(capsys, tmp_path, edit, says):
    folder = write_corpus(tmp_path / "talkshow", CARD.replace(*edit))
    out = tmp_path / "runs"
    code, _, err = cli(capsys, *RUN, "--dataset", str(folder), "--out", str(out))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
    assert not out.exists()


def test_a_missing_file_named_by_the_card(capsys, tmp_path):
    folder = write_corpus(tmp_path / "talkshow")
    (folder / "features.npz").unlink()
    code, _, err = cli(capsys, *RUN, "--dataset", str(folder / "dataset.toml"), "--out", str(tmp_path / "r"))
    assert code == 2 and "features.npz not found" in err and "files.features" in err


def test_a_name_taken_by_a_built_in_dataset(tmp_path):
    folder = write_corpus(tmp_path / "x", CARD.replace('name = "talkshow"', 'name = "mosi"'))
    from msabench.data.datasets import resolve_dataset_arg

    with pytest.raises(UserError, match="taken by a built-in dataset"):
        resolve_dataset_arg(str(folder), None)


def test_mmsa_pickle_card_with_classes(tmp_path):
    rng = np.random.default_rng(1)
    splits = {}
    for split, n in SIZES.items():
        splits[split] = {"id": [f"{split}_{i}" for i in range(n)],
                         "text": rng.standard_normal((n, 5, 4)).astype(np.float32),
                         "audio": rng.standard_normal((n, 6, 2)).astype(np.float32),
                         "vision": rng.standard_normal((n, 7, 3)).astype(np.float32),
                         "audio_lengths": [6] * n, "vision_lengths": [7] * n,
                         "classification_labels": rng.integers(0, 3, n)}
    folder = tmp_path / "moods"
    folder.mkdir()
    (folder / "moods.pkl").write_bytes(pickle.dumps(splits, protocol=4))
    card = ('name = "moods"\nfamily = "meld"\nlayout = "mmsa-pkl"\nclasses = ["negative", "neutral", "positive"]\n'
            '[files]\npickle = "moods.pkl"\n[dims]\nt = 4\na = 2\nv = 3\n')
    (folder / "dataset.toml").write_text(card)
    data = load_dataset("moods", data_root=tmp_path)
    assert data.label_kind == "classification" and data.family == "meld"
    assert data.data_hash == files_hash([folder / "moods.pkl"])
    (folder / "dataset.toml").write_text(card.replace('classes = ["negative", "neutral", "positive"]',
                                                      "label_range = [-3, 3]"))
    DATASETS._items.pop("moods")
    with pytest.raises(UserError, match="holds classification labels but"):
        load_dataset("moods", data_root=tmp_path)


def test_the_readme_card_is_a_valid_card_and_data_check_and_listing_read_cards(capsys, tmp_path):
    from msabench.data.cards import read_card

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme[readme.index("```toml\nname = \"talkshow\"") + len("```toml\n"):]
    (tmp_path / "dataset.toml").write_text(block[:block.index("```")])
    card = read_card(tmp_path / "dataset.toml")
    assert (card.name, card.layout, card.label_range, card.dims) == ("talkshow", "label-csv", (-3.0, 3.0),
                                                                     {"t": 768, "a": 74})
    write_corpus(tmp_path / "root" / "talkshow")
    code, out, err = cli(capsys, "data", "check", str(tmp_path / "root" / "talkshow"), "--json")
    assert code == 0, err
    (summary,) = json.loads(out)["datasets"]
    assert summary["name"] == "talkshow" and summary["family"] == "mosi"
    code, out, _ = cli(capsys, "datasets", "--data-root", str(tmp_path / "root"))
    assert code == 0 and any(line.split()[:2] == ["talkshow", "real"] for line in out.splitlines())



def test_a_worker_registers_the_cards_its_driver_registered_by_path(tmp_path):
    """A spawned worker or a Ray task starts with no card registered: `RunOptions.dataset_cards`
    carries them (name -> card file) and the runner registers them before loading."""
    from msabench.data.datasets import register_cards, resolve_dataset_arg
    from msabench.engine.options import RunOptions

    folder = write_corpus(tmp_path / "somewhere" / "talkshow")
    assert resolve_dataset_arg(str(folder), None) == "talkshow"
    options = RunOptions(dataset_cards=registered_cards())
    assert options.dataset_cards == {"talkshow": str((folder / "dataset.toml").resolve())}
    DATASETS._items.pop("talkshow")  # what a fresh worker sees
    with pytest.raises(UserError, match="unknown dataset 'talkshow'"):
        load_dataset("talkshow")
    register_cards(options.dataset_cards)
    register_cards(options.dataset_cards)  # again: a no-op
    assert load_dataset("talkshow").dims() == {"t": 6, "a": 3}
