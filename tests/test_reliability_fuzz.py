"""Issue 7, fuzzing (hypothesis) of every reader and of `data check`: whatever the bytes or the
structure, the result is a clean `UserError` or a validated dataset; never another exception, never a
hang (a hypothesis deadline per example and a SIGALRM watchdog around every call).

Readers: the restricted unpickler (`safe_pickle`), the MMSA pickle, the MulT pickle, MMSA's
label.csv, MELD's CSVs, features.npz, and `data check` over whole data roots. Each fuzzer prints its
number of examples and outcomes (run with -s). The examples are derandomized (the same every run, so
CI is stable); set MSABENCH_FUZZ_SCALE=10 for a ten times longer, random local fuzzing session.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import pickle
import signal
from collections import Counter
from datetime import timedelta

import numpy as np
from fixtures import faults
from fixtures.realdata import write_meld, write_mult_iemocap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from msabench.core.errors import UserError
from msabench.data import readers, safe_pickle
from msabench.data.check import check_path
from msabench.data.container import SPLITS, SplitData

SCALE = float(os.environ.get("MSABENCH_FUZZ_SCALE", "1"))
HANG_SECONDS = 20  # one call of a reader on a few KB: milliseconds; 20 s is a hang
TOTALS: dict[str, Counter] = {}


def fuzz_settings(n: int):
    return settings(max_examples=max(1, int(n * SCALE)), deadline=timedelta(seconds=5), derandomize=SCALE == 1,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


class Hang(BaseException):
    """Raised by the watchdog: a BaseException, so no reader's `except Exception` can swallow it."""


@contextlib.contextmanager
def watchdog(seconds: int = HANG_SECONDS):
    def hung(signum, frame):
        raise Hang(f"a reader hung for {seconds} s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def outcome(name: str, call) -> object:
    """Run `call`; count 'read' or 'refused' (UserError); anything else propagates (a failure)."""
    counts = TOTALS.setdefault(name, Counter())
    counts["examples"] += 1
    with watchdog():
        try:
            result = call()
        except UserError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip(), f"not one line: {exc!r}"
            counts["refused"] += 1
            return exc
    counts["read"] += 1
    return result


def report(name: str) -> None:
    c = TOTALS[name]
    print(f"\nFUZZ {name}: {c['examples']} examples: {c['read']} read, {c['refused']} refused with a clean "
          f"UserError, 0 other exceptions, 0 hangs")


# ---------------------------------------------------------------------------------- values
def np_arrays(max_dims: int = 3, max_side: int = 4):
    dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.bool_, np.uint8])
    numeric = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    text = hnp.arrays(hnp.unicode_string_dtypes(max_len=4), hnp.array_shapes(max_dims=2, max_side=3))
    return st.one_of(numeric, text)


scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), st.binary(max_size=8))
plain = st.recursive(
    st.one_of(scalars, np_arrays()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
# What a feature/label slot of a reader may be handed: arrays of any shape and dtype (NaN/inf
# included), scalars, ragged lists, nested dicts, None.
slot_values = st.one_of(
    np_arrays(max_dims=4, max_side=30),
    hnp.arrays(np.float32, st.tuples(st.integers(0, 30), st.integers(0, 9), st.integers(0, 9)),
               elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
    st.lists(st.one_of(st.integers(-5, 99), st.floats(), st.text(max_size=3)), max_size=30),
    scalars, st.dictionaries(st.text(max_size=3), scalars, max_size=2),
)


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and \
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------------------------- safe_pickle
def test_fuzz_safe_pickle_round_trips_every_allowed_value():
    @fuzz_settings(300)
    @given(plain, st.integers(0, 5))
    def check(obj, protocol):
        blob = pickle.dumps(obj, protocol=protocol)
        back = outcome("safe_pickle round trip (allowed values, protocols 0-5)", lambda: safe_pickle.loads(blob))
        assert same(pickle.loads(blob), back), (obj, back)  # what plain pickle gives (the blob is ours: safe)

    check()
    report("safe_pickle round trip (allowed values, protocols 0-5)")
    assert TOTALS["safe_pickle round trip (allowed values, protocols 0-5)"]["refused"] == 0


def test_fuzz_safe_pickle_random_and_mutated_bytes():
    seeds = [pickle.dumps(faults.mmsa_data(), protocol=p) for p in (2, 4, 5)] + \
        [pickle.dumps({"a": np.arange(6.0).reshape(2, 3), "b": ["x", b"y", (1, 2.5)]}, protocol=0)]

    @fuzz_settings(500)
    @given(st.data())
    def check(data):
        if data.draw(st.booleans()):
            raw = data.draw(st.binary(max_size=600))
        else:
            raw = bytearray(data.draw(st.sampled_from(seeds)))
            for _ in range(data.draw(st.integers(1, 6))):
                op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
                pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
                if op == "flip" and raw:
                    raw[pos] = data.draw(st.integers(0, 255))
                elif op == "cut":
                    del raw[pos:]
                elif op == "insert":
                    raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
                elif raw:
                    del raw[pos:pos + data.draw(st.integers(1, 64))]
            raw = bytes(raw)
        outcome("safe_pickle (random and mutated bytes)", lambda: safe_pickle.loads(raw))

    check()
    report("safe_pickle (random and mutated bytes)")


# ---------------------------------------------------------------------------------- MMSA / MulT pickles
mmsa_keys = st.sampled_from(["id", "raw_text", "text", "text_bert", "audio", "vision", "audio_lengths",
                             "vision_lengths", "regression_labels", "regression_labels_T", "classification_labels",
                             "multilabel_labels", "junk"])


def _mutate_split_dict(data, obj: dict, keys, max_ops: int = 3) -> dict:
    for _ in range(data.draw(st.integers(1, max_ops))):
        where = data.draw(st.sampled_from([*SPLITS, "<top>"]))
        if where == "<top>":
            op = data.draw(st.sampled_from(["drop-split", "replace-split", "replace-file", "rename-split"]))
            split = data.draw(st.sampled_from(SPLITS))
            if op == "drop-split":
                obj.pop(split, None)
            elif op == "replace-split":
                obj[split] = data.draw(slot_values)
            elif op == "rename-split" and split in obj:
                obj[data.draw(st.sampled_from(["dev", "Train", "val"]))] = obj.pop(split)
            else:
                return data.draw(slot_values)
        elif isinstance(obj.get(where), dict):
            key = data.draw(keys)
            if data.draw(st.booleans()):
                obj[where].pop(key, None)
            else:
                obj[where][key] = data.draw(slot_values)
    return obj


def test_fuzz_mmsa_pickle_reader(tmp_path):
    path = tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl"
    path.parent.mkdir(parents=True)

    @fuzz_settings(300)
    @given(st.data())
    def check(data):
        obj = _mutate_split_dict(data, faults.mmsa_data(), mmsa_keys)
        path.write_bytes(pickle.dumps(obj, protocol=4))
        outcome("MMSA pickle reader (structure)", lambda: readers.read_mmsa_pickle(path))

    check()
    report("MMSA pickle reader (structure)")


def test_fuzz_mult_pickle_reader(tmp_path):
    path = write_mult_iemocap(tmp_path)
    good = pickle.loads(path.read_bytes())
    keys = st.sampled_from(["text", "audio", "vision", "labels", "id", "junk"])

    @fuzz_settings(150)
    @given(st.data())
    def check(data):
        obj = _mutate_split_dict(data, {s: dict(d) for s, d in good.items()}, keys)
        path.write_bytes(pickle.dumps(obj, protocol=4))
        outcome("MulT pickle reader (structure)", lambda: readers.read_mult_pickle(path))

    check()
    report("MulT pickle reader (structure)")


# ---------------------------------------------------------------------------------- CSVs
cells = st.one_of(st.text(max_size=12), st.sampled_from(["train", "valid", "test", "0.4", "-3", "3.01", "nan",
                                                         "inf", "", "positive", "neutral", "negative", "1e400"]),
                  st.floats(allow_nan=True).map(str), st.integers(-5, 5).map(str))


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])
    return buf.getvalue()


def _mangle(data, text: str) -> bytes:
    raw = text.encode("utf-8")
    if data.draw(st.integers(0, 3)) == 0:  # sometimes raw bytes: non-UTF-8, NUL, stray quotes
        pos = data.draw(st.integers(0, len(raw)))
        raw = raw[:pos] + data.draw(st.binary(min_size=1, max_size=6)) + raw[pos:]
    return raw


def test_fuzz_label_csv_reader(tmp_path):
    path = tmp_path / "MOSI" / "label.csv"
    path.parent.mkdir(parents=True)
    columns = ["video_id", "clip_id", "text", "label", "annotation", "mode", "label_T", "label_A", "label_V"]

    good = faults.write_label_csv(tmp_path / "good").read_text().splitlines()

    @fuzz_settings(300)
    @given(st.data())
    def check(data):
        if data.draw(st.booleans()):  # random columns and rows
            header = data.draw(st.lists(st.sampled_from(columns + ["extra"]), min_size=0, max_size=8))
            if data.draw(st.booleans()):
                header = columns[:6] + header[:2]
            width = data.draw(st.integers(max(0, len(header) - 1), len(header) + 1))
            rows = data.draw(st.lists(st.lists(cells, min_size=width, max_size=width), max_size=25))
            text = _csv_text(header, rows)
        else:  # a good file with a few cells, lines or ids edited
            lines = list(good)
            for _ in range(data.draw(st.integers(0, 3))):
                i = data.draw(st.integers(0, len(lines) - 1))
                row = next(csv.reader([lines[i]]))
                j = data.draw(st.integers(0, len(row) - 1))
                row[j] = data.draw(cells)
                lines[i] = _csv_text(row, []).rstrip("\r\n")
            text = "\n".join(lines) + "\n"
        path.write_bytes(_mangle(data, text))
        outcome("label.csv reader", lambda: readers.read_label_csv(path, features=None))

    check()
    report("label.csv reader")


def test_fuzz_meld_csv_reader(tmp_path):
    folder = write_meld(tmp_path / "root")
    originals = {f: (folder / f).read_bytes() for f in readers.MELD_FILES.values()}
    columns = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"]

    @fuzz_settings(200)
    @given(st.data())
    def check(data):
        for f, raw in originals.items():
            (folder / f).write_bytes(raw)
        target = data.draw(st.sampled_from(sorted(originals)))
        if data.draw(st.booleans()):
            header = data.draw(st.lists(st.sampled_from(columns), max_size=8))
            rows = data.draw(st.lists(st.lists(cells, min_size=len(header), max_size=len(header)), max_size=20))
            raw = _mangle(data, _csv_text(header, rows))
        else:  # the real file with edited cells
            lines = originals[target].decode().splitlines()
            i = data.draw(st.integers(0, len(lines) - 1))
            lines[i] = ",".join(data.draw(st.lists(cells, min_size=1, max_size=12)))
            raw = _mangle(data, "\n".join(lines) + "\n")
        (folder / target).write_bytes(raw)
        outcome("MELD CSV reader (one file)", lambda: readers.read_meld_csv(folder / target))
        outcome("MELD reader (three files + features.npz)", lambda: readers.read_meld(folder))

    check()
    report("MELD CSV reader (one file)")
    report("MELD reader (three files + features.npz)")


# ---------------------------------------------------------------------------------- features.npz
npz_keys = st.sampled_from(["id", "text", "audio", "vision", "text_lengths", "audio_lengths", "vision_lengths",
                            "other"])


def _splits() -> dict[str, SplitData]:
    return {s: SplitData(ids=np.array([f"{s}_{i}" for i in range(4)])) for s in SPLITS}


def test_fuzz_features_npz(tmp_path):
    path = tmp_path / "features.npz"
    ids = np.array([f"{s}_{i}" for s in SPLITS for i in range(4)])

    @fuzz_settings(250)
    @given(st.data())
    def check(data):
        arrays = {"id": ids, "text": np.zeros((12, 3, 2), np.float32)} if data.draw(st.booleans()) else {}
        for _ in range(data.draw(st.integers(0, 4))):
            arrays[data.draw(npz_keys)] = data.draw(np_arrays(max_dims=3, max_side=13))
        (np.savez_compressed if data.draw(st.booleans()) else np.savez)(path, **arrays)
        raw = path.read_bytes()
        if data.draw(st.integers(0, 4)) == 0:  # a damaged archive
            pos = data.draw(st.integers(0, len(raw)))
            raw = raw[:pos] + data.draw(st.binary(max_size=8)) + raw[pos + data.draw(st.integers(0, 64)):]
            path.write_bytes(raw)
        outcome("features.npz (attach to splits)", lambda: readers.attach_features(_splits(), path))
        outcome("features.npz (data check alone)", lambda: check_path(path))

    check()
    report("features.npz (attach to splits)")
    report("features.npz (data check alone)")


# ---------------------------------------------------------------------------------- data check over roots
def test_fuzz_data_check_over_data_roots(tmp_path):
    """Whole data roots: each dataset absent, intact, byte-damaged or structurally broken."""
    pristine = tmp_path / "pristine"
    from fixtures.realdata import write_mmsa

    files = {
        "MOSI/Processed/unaligned_50.pkl": write_mmsa(pristine, "MOSI", "unaligned_50.pkl"),
        "SIMS/Processed/unaligned_39.pkl": write_mmsa(pristine, "SIMS", "unaligned_39.pkl", score_range=1.0),
        "IEMOCAP/iemocap_data_noalign.pkl": write_mult_iemocap(pristine),
        "MOSI/label.csv": faults.write_label_csv(pristine / "MOSI"),
    }
    meld = write_meld(pristine)
    for f in [*readers.MELD_FILES.values(), "features.npz"]:
        files[f"MELD/{f}"] = meld / f
    originals = {rel: p.read_bytes() for rel, p in files.items()}
    root = tmp_path / "root"
    counter = [0]

    @fuzz_settings(120)
    @given(st.data())
    def check(data):
        import shutil

        counter[0] += 1
        here = root / str(counter[0])
        for rel, raw in originals.items():
            fate = data.draw(st.sampled_from(["absent", "intact", "intact", "bytes", "empty"]))
            if fate == "absent":
                continue
            if fate == "bytes":
                pos = data.draw(st.integers(0, len(raw)))
                raw = raw[:pos] + data.draw(st.binary(max_size=16)) + raw[pos + data.draw(st.integers(0, 200)):]
            elif fate == "empty":
                raw = b""
            (here / rel).parent.mkdir(parents=True, exist_ok=True)
            (here / rel).write_bytes(raw)
        here.mkdir(parents=True, exist_ok=True)
        outcome("data check (whole data roots)", lambda: check_path(here, label_rule=data.draw(
            st.sampled_from(["sign", "round"]))))
        shutil.rmtree(here)

    check()
    report("data check (whole data roots)")


def counter_lines() -> list[str]:
    """Printed by the terminal-summary hook in conftest.py."""
    if not TOTALS:
        return []
    total = sum(c["examples"] for c in TOTALS.values())
    return [f"FUZZ total: {total} examples over {len(TOTALS)} readers/entry points; only clean UserErrors or "
            "validated data; no other exception, no hang"]
