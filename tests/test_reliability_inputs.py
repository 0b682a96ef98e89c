"""Issue 7, bad input matrix: every bad input through the CLI exits 2 with one line naming the problem
and the fix, never a traceback, and starts nothing (docs/architecture.md §3, §5, §9).

The matrix sits beside test_cli.py's `test_user_errors_exit_2_with_one_line` (15 cases: unknown
protocol/model/dataset/model key spellings, `--set` syntax and float type, `--seeds 1,x`, bad
`--modalities`, `--device cuda:7`, a selection the protocol lacks, `data synth` typo, missing data
file and store, unknown command) and repeats none of them. Separately: an unreachable tracking URI
gives one warning and keeps every result.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import faults
from fixtures.realdata import write_meld, write_mmsa, write_mult_iemocap

from msabench.api.model import MODELS
from msabench.cli import main
from msabench.store.runs import Store

RUN = ["run", "--protocol", "standard", "--tiny", "--no-mlflow", "--threads", "1", "--model", "linear_probe",
       "--seeds", "1"]
DRY = ["run", "--tiny", "--no-mlflow", "--threads", "1", "--dry-run"]


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # what the matrix row stands for (README table)
    build: Callable[[Path], list[str]]  # tmp folder -> CLI arguments (files fabricated on the way)
    problem: str  # regex the line must match: the problem
    fix: str  # regex the line must match: the fix


# ------------------------------------------------------------------------------ data fabricators
def _mosi(tmp: Path, mutate: Callable[[dict], None]) -> Path:
    faults.write_mosi(tmp, faults.broken_mosi(mutate))
    return tmp


def run_mosi(mutate: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    return lambda tmp: [*RUN, "--dataset", "mosi", "--data-root", str(_mosi(tmp / "root", mutate)),
                        "--out", str(tmp / "store")]


def check_mosi(mutate: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    return lambda tmp: ["data", "check", str(faults.mosi_pickle(_mosi(tmp / "root", mutate)))]


def _set(split: str, key: str, value) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        d[split][key] = value(d[split][key]) if callable(value) else value
    return mutate


def _poke(split: str, key: str, index: tuple, value: float) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        d[split][key][index] = value
    return mutate


def _raw_mosi(data: bytes, check: bool) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        path = faults.mosi_pickle(tmp / "root")
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        if check:
            return ["data", "check", str(path)]
        return [*RUN, "--dataset", "mosi", "--data-root", str(tmp / "root"), "--out", str(tmp / "store")]
    return build


def _good_pickle() -> bytes:
    return pickle.dumps(faults.mmsa_data(), protocol=4)


def _label_csv(rows=None, header=None, raw: Callable[[bytes], bytes] | None = None, run: bool = False):
    def build(tmp: Path) -> list[str]:
        path = faults.write_label_csv(tmp / "root" / "MOSI", rows=rows, header=header)
        if raw is not None:
            path.write_bytes(raw(path.read_bytes()))
        if run:
            return [*RUN, "--dataset", "mosi", "--data-root", str(tmp / "root"), "--out", str(tmp / "store")]
        return ["data", "check", str(path)]
    return build


def _meld(edit: Callable[[Path], None], run: bool = True, modalities: str = "t"):
    def build(tmp: Path) -> list[str]:
        folder = write_meld(tmp / "root")
        edit(folder)
        if run:
            return [*RUN, "--dataset", "meld", "--modalities", modalities, "--data-root", str(tmp / "root"),
                    "--out", str(tmp / "store")]
        return ["data", "check", str(tmp / "root")]
    return build


def _npz(**arrays):
    def edit(folder: Path) -> None:
        old = dict(np.load(folder / "features.npz"))
        new = {k: (v(old) if callable(v) else v) for k, v in arrays.items()}
        np.savez(folder / "features.npz", **new)
    return edit


def _mult(mutate: Callable[[dict], None], check: bool):
    def build(tmp: Path) -> list[str]:
        path = write_mult_iemocap(tmp / "root")
        data = pickle.loads(path.read_bytes())
        mutate(data)
        path.write_bytes(pickle.dumps(data, protocol=4))
        if check:
            return ["data", "check", str(path)]
        return [*RUN, "--dataset", "iemocap", "--data-root", str(tmp / "root"), "--out", str(tmp / "store")]
    return build


def _dg_roots(text_dim_meld: int, modalities: str):
    def build(tmp: Path) -> list[str]:
        root = tmp / "root"
        write_mmsa(root, "MOSI", "unaligned_50.pkl")
        write_mmsa(root, "MOSEI", "unaligned_50.pkl", seed=1)
        write_meld(root, text_dim=text_dim_meld)
        return ["run", "--protocol", "dg-single", "--setting", "A", "--dataset", "mosi", "--dataset", "mosei",
                "--dataset", "meld", "--modalities", modalities, "--data-root", str(root), "--tiny", "--no-mlflow",
                "--model", "linear_probe", "--seeds", "1", "--out", str(tmp / "store")]
    return build


def _sweep(text: bytes):
    def build(tmp: Path) -> list[str]:
        (tmp / "sweep.toml").write_bytes(text)
        return ["run", "--sweep", str(tmp / "sweep.toml"), "--tiny", "--no-mlflow", "--out", str(tmp / "store")]
    return build


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------ a store to break
_STORE: dict[str, Path] = {}  # "path": a one-run store, made once per module (fixture tiny_store)


def _tiny_store(tmp: Path) -> Path:
    """A copy of the module's one-run store."""
    out = tmp / "store"
    shutil.copytree(_STORE["path"], out)
    return out


def _store_case(command: list[str], damage: Callable[[Path], None]):
    def build(tmp: Path) -> list[str]:
        out = _tiny_store(tmp)
        (run_dir,) = [p for p in (out / "runs").iterdir() if p.is_dir()]
        damage(run_dir)
        return [*command, "--out", str(out)]
    return build


def _cut_records(run_dir: Path) -> None:
    text = (run_dir / "records.jsonl").read_text()
    (run_dir / "records.jsonl").write_text(text[: len(text) // 2] + "\n" + text[len(text) // 2 + 5:])


def _records_schema(run_dir: Path) -> None:
    path = run_dir / "records.jsonl"
    path.write_text(path.read_text().replace('"schema":1', '"schema":2'))


def _spec_schema(run_dir: Path) -> None:
    path = run_dir / "spec.json"
    path.write_text(path.read_text().replace('"schema": 1', '"schema": 99', 1))


def _spec_garbage(run_dir: Path) -> None:
    (run_dir / "spec.json").write_bytes(b'{"schema": 1, "protocol": "stan')


def _file(name: str, content: bytes, *args: str):
    def build(tmp: Path) -> list[str]:
        (tmp / name).write_bytes(content)
        return [a.replace("{file}", str(tmp / name)).replace("{tmp}", str(tmp)) for a in args]
    return build


def _args(*args: str):
    return lambda tmp: [a.replace("{tmp}", str(tmp)) for a in args]


REGENERATE = r"regenerate|use the original|download|use MulT's file|fix the|clean or regenerate"

CASES = [
    # --- data files: missing, truncated, corrupted --------------------------------------------------
    Case("missing-data-file", "missing data file", lambda tmp: [*RUN, "--dataset", "mosi", "--data-root",
         str(_folder(tmp / "root" / "MOSI").parent), "--out", str(tmp / "store")],
         r"no files under .*unaligned_50\.pkl.*thuiar/MMSA", r"pass --data-root DIR"),
    Case("truncated-pickle", "truncated data file", _raw_mosi(_good_pickle()[:700], check=True),
         r"not a readable pickle.*truncated", r"download or generate it again"),
    Case("random-bytes-pickle", "corrupted data file", _raw_mosi(bytes(range(256)) * 8, check=False),
         r"unaligned_50\.pkl is not a readable pickle", r"download or generate it again"),
    Case("empty-pickle", "empty data file", _raw_mosi(b"", check=True),
         r"not a readable pickle \(EOFError", r"download or generate it again"),
    Case("hostile-pickle", "untrusted pickle (code)", lambda tmp: [
        *RUN, "--dataset", "mosi", "--data-root",
        str(faults.write_mosi(tmp / "root", faults.hostile_mmsa(tmp / "marker")).parents[2]),
        "--out", str(tmp / "store")],
         r"refers to posix\.system, which a data pickle may not contain", r"re-save the file with plain numpy"),
    # --- wrong pickle layout, missing or empty split ----------------------------------------------
    Case("pickle-not-a-dict", "wrong pickle layout", _raw_mosi(pickle.dumps([1, 2, 3]), check=False),
         r"holds a list, not a dict of splits", r"use the original file"),
    Case("split-not-a-dict", "wrong pickle layout", check_mosi(lambda d: d.update(train=[1, 2])),
         r"split 'train' is a list, not a dict", r"use the original file"),
    Case("key-missing", "wrong pickle layout", run_mosi(lambda d: d["valid"].pop("vision")),
         r"\[valid\] lacks 'vision'", r"use the original file or regenerate"),
    Case("split-missing", "missing split", run_mosi(lambda d: d.pop("test")),
         r"lacks 'test'", r"use the original file or regenerate"),
    Case("split-empty", "empty split", check_mosi(lambda d: d.update(valid={
        k: (v[:0] if hasattr(v, "__len__") else v) for k, v in d["valid"].items()})),
         r"\[valid\] is empty", r"check the file"),
    # --- shapes vs lengths ------------------------------------------------------------------------
    Case("length-above-T", "shapes vs lengths", check_mosi(_poke("train", "audio_lengths", (3,), 99)),
         r"audio_lengths\[3\] = 99 exceeds the padded length", REGENERATE),
    Case("lengths-count", "shapes vs lengths", run_mosi(_set("valid", "vision_lengths", lambda v: v[:-1])),
         r"vision_lengths has shape \(7,\) but the split has 8", REGENERATE),
    Case("rows-vs-ids", "shapes vs lengths", check_mosi(_set("train", "audio", lambda v: v[:-2])),
         r"audio has 22 rows but the split has 24 ids", REGENERATE),
    Case("negative-length", "shapes vs lengths", run_mosi(_poke("test", "vision_lengths", (0,), -1)),
         r"vision_lengths\[0\] = -1 is negative", REGENERATE),
    Case("feature-dims-differ", "shapes vs lengths", check_mosi(_set("test", "audio",
                                                                      np.zeros((8, 7, 9), np.float32))),
         r"audio has feature shape \(9,\) in test but \(5,\) in train", REGENERATE),
    # --- non-finite values, label ranges, duplicate ids -------------------------------------------
    Case("nan-feature", "NaN feature", run_mosi(_poke("train", "vision", (1, 1, 1), np.nan)),
         r"\[train\] vision contains NaN", REGENERATE),
    Case("inf-feature", "+inf feature", check_mosi(_poke("test", "text", (0, 0, 0), np.inf)),
         r"\[test\] text contains \+inf", REGENERATE),
    Case("neg-inf-vision", "-inf outside audio", run_mosi(_poke("valid", "vision", (2, 0, 1), -np.inf)),
         r"vision contains -inf; -inf is allowed only in audio", REGENERATE),
    Case("nan-label", "NaN label", check_mosi(_poke("valid", "regression_labels", (0,), np.nan)),
         r"regression labels contains NaN", REGENERATE),
    Case("label-out-of-range", "label out of range", run_mosi(_poke("train", "regression_labels", (2,), 4.5)),
         r"score 4\.5 is outside \[-3, 3\], the range of mosi labels", r"check that the file belongs"),
    Case("sims-label-out-of-range", "label out of range", lambda tmp: [
        *RUN, "--dataset", "sims", "--data-root",
        str(write_mmsa(tmp / "root", "SIMS", "unaligned_39.pkl", score_range=3.0).parents[2]),
        "--out", str(tmp / "store")],
         r"outside \[-1, 1\], the range of sims labels", r"check that the file belongs"),
    Case("duplicate-ids", "duplicate ids", check_mosi(lambda d: d["test"]["id"].__setitem__(1, d["train"]["id"][0])),
         r"1 sample ids occur more than once \('MOSItrain_0'\)", r"fix the id column"),
    Case("labels-not-numbers", "wrong pickle layout", run_mosi(_set("train", "regression_labels",
                                                                    np.array(["high"] * 24))),
         r"regression_labels is not numeric", REGENERATE),
    # --- CSVs: wrong columns, non-UTF-8, bad values ------------------------------------------------
    Case("label-csv-columns", "CSV wrong columns", _label_csv(header=["video_id", "clip", "text", "label", "mode"],
                                                               rows=[["a", 1, "x", 0.1, "train"]]),
         r"lacks the column\(s\) clip_id \(its header is: video_id, clip", r"use the original file"),
    Case("label-csv-not-utf8", "CSV non-UTF-8", _label_csv(raw=lambda b: b.replace(b"fine 3", b"\xe9t\xe9 3"),
                                                            run=True),
         r"MOSI/label\.csv is not UTF-8 \(byte 0xe9 on line \d+\)", r"save it as UTF-8"),
    Case("label-csv-bad-number", "CSV bad value", _label_csv(rows=[["a", 1, "x", "high", "N", "train"]]),
         r"label value 'high' is not a number", r"fix the label column"),
    Case("label-csv-bad-mode", "CSV bad value", _label_csv(rows=[["a", 1, "x", "0.5", "N", "training"]]),
         r"mode 'training' is not train, valid or test", r"fix the mode column"),
    Case("label-csv-ragged-row", "CSV wrong columns", _label_csv(raw=lambda b: b + b"vid,9,short\n"),
         r"line \d+ has 3 fields but the header has 6", r"fix the row"),
    Case("label-csv-empty", "empty data file", _label_csv(raw=lambda b: b""),
         r"label\.csv is empty", r"needs a header row"),
    Case("meld-bad-sentiment", "CSV bad value", _meld(lambda f: (f / "dev_sent_emo.csv").write_text(
        (f / "dev_sent_emo.csv").read_text().replace("negative", "angry", 1))),
         r"dev_sent_emo\.csv line \d+: Sentiment 'angry' is not negative, neutral or positive",
         r"fix the Sentiment column"),
    Case("meld-missing-file", "missing data file", _meld(lambda f: (f / "test_sent_emo.csv").unlink()),
         r"MELD/test_sent_emo\.csv under .* not found.*declare-lab", r"pass --data-root DIR"),
    Case("meld-not-utf8", "CSV non-UTF-8", _meld(lambda f: (f / "train_sent_emo.csv").write_bytes(
        (f / "train_sent_emo.csv").read_bytes().replace(b"Joey", b"Jo\xebey", 1)), run=False),
         r"train_sent_emo\.csv is not UTF-8 \(byte 0xeb", r"save it as UTF-8"),
    # --- features.npz -----------------------------------------------------------------------------
    Case("npz-object-arrays", "corrupted data file", _meld(_npz(id=np.array(["x"], dtype=object),
                                                                 text=np.zeros((1, 8))), run=False),
         r"features\.npz stores Python objects", r"save ids and features as plain"),
    Case("npz-missing-ids", "missing ids", _meld(_npz(id=lambda o: o["id"][:-3], text=lambda o: o["text"][:-3])),
         r"has no features for 3 test ids", r"regenerate it"),
    Case("npz-not-a-zip", "corrupted data file", _meld(lambda f: (f / "features.npz").write_bytes(b"PK\x03\x04" * 9)),
         r"features\.npz is not a readable \.npz", r"regenerate it"),
    Case("npz-duplicate-id", "duplicate ids", _meld(_npz(id=lambda o: np.concatenate([o["id"], o["id"][:1]]),
                                                          text=lambda o: np.concatenate([o["text"], o["text"][:1]]))),
         r"id 'train_dia0_utt0' occurs more than once", r"fix the file"),
    Case("npz-nan", "NaN feature", _meld(_npz(id=lambda o: o["id"], text=lambda o: np.where(
        np.arange(o["text"].size).reshape(o["text"].shape) == 5, np.nan, o["text"])), run=False),
         r"MELD \[train\] text contains NaN", REGENERATE),
    # --- MulT (IEMOCAP) ---------------------------------------------------------------------------
    Case("mult-label-shape", "wrong pickle layout", _mult(lambda d: d["train"].update(
        labels=d["train"]["labels"][:, :3]), check=False),
         r"labels have shape \(24, 3, 2\), expected \(N, 4, 2\)", r"use MulT's file"),
    Case("mult-label-values", "label out of range", _mult(lambda d: d["valid"]["labels"].__setitem__(
        (0, 0, 1), 3.0), check=True),
         r"multi-labels hold values other than 0 and 1", r"fix the labels"),
    # --- data check: what it is given ------------------------------------------------------------
    Case("check-not-a-data-file", "not a data file", _file("notes.txt", b"hello", "data", "check", "{file}"),
         r"notes\.txt is not a data file msabench reads", r"give a \.pkl, label\.csv"),
    Case("check-empty-folder", "no dataset found", _args("data", "check", "{tmp}"),
         r"no dataset found under", r"pass --data-root DIR"),
    Case("check-label-rule", "click usage error", _args("data", "check", "{tmp}", "--label-rule", "nearest"),
         r"Invalid value for '--label-rule': 'nearest'", r"see `msabench data check --help`"),
    # --- names: model, variant, protocol, dataset, setting, selection, table (with suggestions) -----
    Case("unknown-variant", "unknown variant", _args(*DRY, "--model", "tfn@nope"),
         r"unknown variant 'nope' of model 'tfn'", r"drop @nope"),
    Case("unknown-setting", "unknown setting", _args(*DRY, "--protocol", "dg-single", "--setting", "D"),
         r"unknown setting 'D' of protocol 'dg-single'", r"Known: A, B, C"),
    Case("setting-without-settings", "unknown setting", _args(*DRY, "--setting", "A"),
         r"protocol 'standard' has no settings", r"drop --setting"),
    Case("lodo-single-source", "unknown selection rule", _args(*DRY, "--protocol", "dg-single", "--selection", "lodo"),
         r"selection 'lodo' needs several source domains", r"use --protocol dg-multisource"),
    Case("report-unknown-selection", "unknown selection rule",
         _store_case(["report", "--selection", "best"], lambda d: None),
         r"--selection 'best'", r"use one of val, train-domain, oracle, lodo, last"),
    Case("run-unknown-table", "unknown table", _args(*DRY, "--table", "s2lif-tabel1"),
         r"unknown table 's2lif-tabel1'", r"Did you mean: s2lif-table1"),
    # names are read in any case (MOSI is mosi); a misspelt one in another case still gets close matches
    Case("unknown-dataset-case", "unknown dataset", _args(*DRY, "--dataset", "MOSY"),
         r"unknown dataset 'MOSY'", r"Did you mean: mosi"),
    Case("unknown-executor", "unknown executor", _args(*DRY, "--executor", "proces"),
         r"unknown executor 'proces'", r"Did you mean: process\? Use one of: local, process, ray"),
    Case("sweep-unknown-protocol", "unknown protocol", _sweep(b'protocol = "dg-singel"\n'),
         r"unknown protocol 'dg-singel'", r"Did you mean: dg-single"),
    Case("sweep-unknown-model", "unknown model", _sweep(b'models = [{name = "linear_prob"}]\n'),
         r"unknown model 'linear_prob'", r"Did you mean: linear_probe"),
    # --- --set, model spec ------------------------------------------------------------------------
    Case("set-unknown-key", "bad --set key", _args(*DRY, "--set", "train.lrr=0.1"),
         r"unknown key 'train\.lrr'", r"Did you mean: train\.lr"),
    Case("set-no-namespace", "bad --set key", _args(*DRY, "--set", "lr=0.1"),
         r"key 'lr' needs a namespace", r"e\.g\. train\.lr=0\.001"),
    Case("set-int-type", "bad --set type", _args(*DRY, "--set", "train.epochs=2.5"),
         r"train\.epochs=2\.5 has type float", r"it takes a int"),
    Case("set-value-range", "bad --set value", _args(*DRY, "--set", "train.epochs=0"),
         r"train\.epochs=0 must be at least 1", r"at least 1"),
    Case("set-data-source", "bad --set value", _args(*DRY, "--set", "data.source=csv"),
         r"data\.source='csv'", r"use one of auto, pkl, aligned, label-csv"),
    Case("spec-empty-overrides", "bad model spec", _args(*DRY, "--model", "tfn:"),
         r"bad model spec 'tfn:': nothing after ':'", r"drop it or add key=value"),
    Case("spec-no-name", "bad model spec", _args(*DRY, "--model", "@frozen"),
         r"bad model spec '@frozen'", r"write NAME\[@VARIANT\]"),
    Case("spec-key-without-value", "bad model spec", _args(*DRY, "--model", "tfn:model.text_dropout"),
         r"'model\.text_dropout' is not KEY=VALUE", r"write e\.g\."),
    # --- seeds, rates -----------------------------------------------------------------------------
    Case("seeds-duplicate", "bad seeds", _args(*DRY, "--seeds", "1,1"),
         r"--seeds '1,1'", r"give distinct non-negative whole numbers"),
    Case("seeds-negative", "bad seeds", _args(*DRY, "--seeds", "-2"),
         r"--seeds '-2'", r"give distinct non-negative whole numbers"),
    Case("n-seeds-zero", "bad seeds", _args(*DRY, "--n-seeds", "0"),
         r"--n-seeds 0", r"must be at least 1"),
    Case("seeds-and-n-seeds", "bad seeds", _args(*DRY, "--seeds", "1", "--n-seeds", "2"),
         r"--seeds or --n-seeds, not both", r"give --seeds or --n-seeds"),
    Case("rates-out-of-range", "bad rates", _args(*DRY, "--protocol", "missing-rate", "--rates", "0,1.5"),
         r"--rates '0,1\.5'", r"every rate must lie in \[0, 1\]"),
    Case("rates-decreasing", "bad rates", _args(*DRY, "--protocol", "missing-rate", "--rates", "0.2,0.1"),
         r"--rates '0\.2,0\.1'", r"give distinct rates in increasing order"),
    Case("rates-not-numbers", "bad rates", _args(*DRY, "--protocol", "missing-rate", "--rates", "low"),
         r"--rates 'low'", r"write numbers in \[0, 1\]"),
    Case("rates-on-standard", "bad rates", _args(*DRY, "--rates", "0.1"),
         r"protocol 'standard' trains on complete data", r"use --protocol missing-rate"),
    # --- feature spaces and modalities -------------------------------------------------------------
    Case("dg-feature-dims", "DG domains with different dims", _dg_roots(16, "t"),
         r"do not share a feature space for modality t \(.*meld: dim 16 read from",
         r"re-encode every domain's text with one encoder"),
    Case("dataset-lacks-modality", "dataset lacks a modality", _dg_roots(8, "t,v"),
         r"dataset meld has no vision features \(it has: t\)", r"choose --modalities among those"),
    Case("model-cannot-take-modalities", "model cannot take the modalities",
         _args(*DRY, "--model", "tv_only", "--modalities", "t,a"),
         r"model 'tv_only' cannot take modalities a \(it supports t,v\)", r"choose other --modalities"),
    Case("real-and-synthetic", "mixed datasets", _args(*DRY, "--dataset", "mosi", "--dataset", "synth-mosi"),
         r"mixing real and synthetic datasets", r"use one kind"),
    # --- devices and execution options ------------------------------------------------------------
    Case("device-cuda-no-gpu", "--device cuda without a GPU", _args(*RUN, "--device", "cuda", "--out", "{tmp}/s"),
         r"--device cuda: no CUDA GPU is visible", r"use --device cpu or auto"),
    Case("device-unknown", "bad device", _args(*RUN, "--device", "tpu", "--out", "{tmp}/s"),
         r"--device 'tpu'", r"use auto, cpu, cuda or cuda:N"),
    Case("precision-on-cpu", "bad precision", _args(*RUN, "--device", "cpu", "--precision", "bf16", "--out", "{tmp}/s"),
         r"--precision bf16 needs a CUDA GPU", r"use --precision fp32"),
    Case("workers-zero", "bad execution option", _args(*RUN, "--executor", "process", "--workers", "0",
                                                        "--out", "{tmp}/s"),
         r"--workers 0", r"must be at least 1"),
    Case("threads-negative", "bad execution option", _args(*DRY, "--threads", "-1"),
         r"--threads -1", r"must be 0 \(torch's default\) or more"),
    Case("tracking-and-no-mlflow", "bad execution option", _args(*DRY, "--tracking-uri", "http://x", "--no-mlflow"),
         r"give --tracking-uri or --no-mlflow, not both", r"not both"),
    Case("from-run-wrong-protocol", "bad execution option", _args(*DRY, "--from-run", "abc"),
         r"--from-run goes with --protocol feature-analysis", r"--protocol feature-analysis"),
    Case("data-synth-scale", "bad option value", _args("data", "synth", "synth-mosi", "--scale", "0"),
         r"--scale 0\.0", r"must be positive"),
    # --- sweep files (data, never code) ------------------------------------------------------------
    Case("sweep-not-utf8", "sweep file non-UTF-8", _sweep(b'protocol = "stand\xffard"\n'),
         r"sweep\.toml: is not UTF-8 \(byte 0xff", r"save it as UTF-8"),
    Case("sweep-code-string", "sweep file with code", _sweep(b'models = ["__import__(\'os\').system(\'id\')"]\n'),
         r"bad model spec \"__import__", r"write NAME\[@VARIANT\]"),
    Case("sweep-bad-toml", "sweep file not TOML", _sweep(b"protocol = standard\n"),
         r"not valid TOML", r"see the sweep-file example in the README"),
    # --- the store: corrupted records, unknown schema versions ------------------------------------
    Case("report-corrupted-records", "corrupted records.jsonl (report)", _store_case(["report"], _cut_records),
         r"records\.jsonl:\d+ is corrupted", r"delete the run folder"),
    Case("status-corrupted-records", "corrupted records.jsonl (status)", _store_case(["status"], _cut_records),
         r"1 run\(s\) of .* cannot be read; the first: .*records\.jsonl:\d+ is corrupted", r"delete the run folder"),
    Case("report-records-schema", "unknown store schema version", _store_case(["report"], _records_schema),
         r"records\.jsonl:1 has schema version 2, which msabench .* cannot read \(it reads schema 1\)",
         r"read it with msabench >="),
    Case("status-spec-schema", "unknown store schema version", _store_case(["status"], _spec_schema),
         r"spec\.json has schema version 99", r"read it with msabench >="),
    Case("export-corrupted-spec", "corrupted spec.json (export)", _store_case(["export"], _spec_garbage),
         r"spec\.json is corrupted \(not valid JSON", r"delete the run folder"),
    Case("check-baseline-not-json", "corrupted baseline", _file("base.json", b"{oops", "check", "--baseline",
                                                                "{file}", "--out", "{tmp}"),
         r"--baseline .*base\.json: not a readable JSON baseline", r"write it again with `msabench check"),
    Case("clean-what", "missing option", _args("clean", "--out", "{tmp}"),
         r"say what to clean", r"--incomplete"),
]


def _line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err}"
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    base = tmp_path_factory.mktemp("reliability") / "tiny-store"
    assert main(["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads",
                 "1", "--model", "constant", "--seeds", "1", "--out", str(base)]) == 0
    _STORE["path"] = base
    return base


@pytest.fixture()
def fault_models(monkeypatch):
    for name, cls in faults.FAULT_MODELS.items():
        monkeypatch.setitem(MODELS._items, name, cls)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_line(case, tmp_path, capsys, monkeypatch, fault_models, tiny_store):
    if case.id == "device-cuda-no-gpu" and torch.cuda.is_available():
        pytest.skip("a GPU is visible here: --device cuda is not a bad input")
    monkeypatch.delenv("MSABENCH_DATA_ROOT", raising=False)
    monkeypatch.setenv("MSABENCH_OUT", str(tmp_path / "default-store"))
    args = case.build(tmp_path)
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    line = _line(err)
    assert code == 2, (code, err)
    assert line.startswith("msabench: error: "), line
    assert re.search(case.problem, line), f"problem {case.problem!r} not in: {line}"
    assert re.search(case.fix, line), f"fix {case.fix!r} not in: {line}"
    if args and args[0] == "run" and "--dry-run" not in args:  # nothing started: no run folder anywhere
        for store in (tmp_path / "store", tmp_path / "s", tmp_path / "default-store"):
            assert not any((store / "runs").glob("*/spec.json")), f"{store} got a run"
    assert not (tmp_path / "marker").exists()


def test_the_matrix_is_big_and_distinct():
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids)
    inputs = {(c.problem, c.fix) for c in CASES}
    assert len(inputs) == len(CASES), "two cases expect the same line"
    kinds = sorted({c.kind for c in CASES})
    assert len(CASES) >= 30
    print(f"\nRELIABILITY bad-input matrix: {len(CASES)} distinct bad inputs through the CLI (+15 in test_cli.py), "
          f"{len(kinds)} kinds; each exit 2 with one line naming the problem and the fix")


def test_bad_inputs_in_a_real_process(tmp_path):
    """The same contract through `python -m msabench` (real exit code and stderr): a truncated
    pickle given to `data check`, a non-UTF-8 label.csv given to `run`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cases = [CASES[[c.id for c in CASES].index(i)] for i in ("truncated-pickle", "label-csv-not-utf8")]
    for case in cases:
        work = tmp_path / case.id
        work.mkdir()
        proc = subprocess.run([sys.executable, "-m", "msabench", *case.build(work)], capture_output=True, text=True,
                              env=env, timeout=120)
        line = _line(proc.stderr)
        assert proc.returncode == 2 and re.search(case.problem, line) and re.search(case.fix, line), proc.stderr


# -- an unreachable tracking URI: one warning, every result kept -------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_unreachable_tracking_uri_one_warning_and_every_result_kept(tmp_path, capsys):
    pytest.importorskip("mlflow")
    uri = f"http://127.0.0.1:{_closed_port()}"
    out = tmp_path / "store"
    code = main(["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--threads", "1",
                 "--model", "constant", "--model", "linear_probe", "--seeds", "1,2", "--tracking-uri", uri,
                 "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line.lower()]
    mlflow_warnings = [line for line in warnings if "MLflow" in line]
    assert len(mlflow_warnings) == 1, err
    assert "sync-mlflow" in mlflow_warnings[0] and uri in mlflow_warnings[0]
    assert "Traceback" not in err
    store = Store(out)
    assert store.summary()["done"] == 4 and faults.incomplete_done_runs(out) == []
    assert "4 runs not logged" in stdout or "sync-mlflow" in stdout
    print(f"\nRELIABILITY tracking: unreachable {uri}: 1 warning, 4 of 4 runs done in the store")
