"""Feature analysis (protocol `feature-analysis`; S2LIF Figs. 4-8; docs/architecture.md §8).

Two halves:

* `analyse_features(...)` and its helpers are pure numpy over named feature matrices (torch-free:
  the report may import them); they compute what `analysis.json` holds.
* `analyse_run(...)` / `analyse_stored_run(...)` (torch, imported lazily) run a trained model over
  the test split of every domain at the selected epoch, collect `ModelOutput.features`, write
  `features.npz` and `analysis.json` into the run directory. `runner.execute` calls `analyse_run`
  at the end of a `feature-analysis` run; `msabench run --protocol feature-analysis --from-run ID`
  calls `analyse_stored_run`.

Blocks. Every named feature a model returns (`ModelOutput.features[name]`, (B, D), or (B, T, D)
averaged over time) is a block. When the model says which *input* feature each column is, the
block is split per modality into `name/t`, `name/v`, ... whose columns are input feature indices
(then the synthetic ground truth can score the selection). A model says so with an optional
method `feature_layout() -> {name: [(modality, input_index), ...]}`; `linear_probe`'s `"input"`
block (pooled inputs at `model.indices[m]` in `model.order`) is recognised without it. Otherwise a
block is analysed whole, with the modality its name implies (`t`, `text...`, `v`, ...) or none.

Selection (which features of a block a model keeps, per domain):
* `model-mask`: the model returns `features[name + ":mask"]` beside `features[name]` (same width,
  values in [0, 1], e.g. S2LIF's learnable masks); a feature is selected in a domain when its mean
  mask over the domain's test samples exceeds 0.5;
* `l1` (default otherwise): an L1-penalised logistic regression (liblinear, one-vs-rest, C =
  `L1_C`) of the label on the standardised block, fitted on the domain's *valid* samples (the
  statistics below are then taken on its test samples, so the selection is not scored on the data
  it was fitted to); a feature is selected when any class gives it a non-zero weight. For
  `linear_probe` this is the "linear probe plus an L1-sparse selection" over input features.
* A model with a mask analyses its features *before* the mask (a masked-out feature is trivially
  label-independent): `features[name + ":premask"]` when it returns one, else `features[name]`,
  which must then be pre-mask (a block whose masked-out columns are all zero is refused).

Per domain and block: the selected indices and retained proportion (Fig. 5 at the selected epoch
only: the trajectory over training that S2LIF's Fig. 5 plots is not computed); the intra-modal
independence ratio among selected features and each selected feature's ratio against the others
(Fig. 7); per selected text feature, the ratio of selected vision features independent of it,
and the overall cross-modal ratio (Fig. 6); the proportion of selected and removed features
dependent on the label (Fig. 8). Across domains: a 0/1 selection matrix (Fig. 4), the features
selected in every domain, those among them whose correlation with the label has the same sign in
every domain (a spurious feature's direction differs between domains, an invariant one's does
not), the mean pairwise Jaccard index. On synthetic data with input-space blocks: precision and
recall of both sets against the ground truth's invariant features (and how many spurious ones
were kept).
Independence: Fisher's z-test, z = atanh(r) * sqrt(n - 3) (no conditioning set), two-sided p,
alpha 0.05: "independent" = not rejected. Constant columns are left out of every independence
ratio (they reject nothing, so they would count as independent) and counted (`n_constant`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

ANALYSIS_SCHEMA = 1
ALPHA = 0.05
L1_C = 0.5
SEP = "|"  # features.npz keys: "<domain>|<block>", "<domain>|y", "<domain>|ids", "<domain>|pred"
MODALITY_WORDS = {"t": "t", "text": "t", "a": "a", "audio": "a", "acoustic": "a", "v": "v", "vision": "v",
                  "visual": "v", "video": "v"}


# --- pure statistics ------------------------------------------------------------------------------------


def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    norms = np.linalg.norm(centred, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return centred / np.where(norms > 0, norms, np.nan)


def _pvalues(r: np.ndarray, n: int) -> np.ndarray:
    """Two-sided Fisher z p-values of correlations r from n samples (nan r -> nan p)."""
    r = np.clip(np.asarray(r, dtype=np.float64), -1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.arctanh(r) * math.sqrt(max(n - 3, 1))
    return 2.0 * sps.norm.sf(np.abs(z))


def correlation_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlations between the columns of a (n, d1) and b (n, d2) (or a with itself)."""
    sa = _standardise(a)
    sb = sa if b is None else _standardise(b)
    return sa.T @ sb


def independent_matrix(a: np.ndarray, b: np.ndarray | None = None, alpha: float = ALPHA) -> np.ndarray:
    """(d1, d2) bool: the Fisher z-test does not reject independence of column i and column j."""
    n = np.asarray(a).shape[0]
    p = _pvalues(correlation_matrix(a, b), n)
    return ~(p <= alpha)


def varying(x: np.ndarray) -> np.ndarray:
    """(d,) bool: the columns that are not constant (a constant column can show no dependence)."""
    x = np.asarray(x, dtype=np.float64)
    return x.std(axis=0) > 0 if x.shape[0] else np.zeros(x.shape[1], dtype=bool)


def intra_independence(x: np.ndarray, alpha: float = ALPHA) -> tuple[float | None, list[float | None]]:
    """(ratio of independent distinct pairs, per feature the ratio of the others independent of it),
    over the non-constant columns only (a constant column's entry is None)."""
    keep = varying(x)
    d = int(keep.sum())
    if d < 2 or x.shape[0] < 4:
        return None, []
    ind = independent_matrix(x[:, keep], alpha=alpha)
    off = ~np.eye(d, dtype=bool)
    pairs = ind[np.triu_indices(d, k=1)]
    per_kept = iter((ind & off).sum(axis=1) / (d - 1))
    return float(pairs.mean()), [float(next(per_kept)) if k else None for k in keep]


def cross_independence(x: np.ndarray, y: np.ndarray, alpha: float = ALPHA) -> tuple[float | None, list[float | None]]:
    """(ratio of independent cross pairs, per column of x the ratio of y's columns independent of it),
    over the non-constant columns of both (a constant column of x gets None)."""
    kx, ky = varying(x), varying(y)
    if kx.sum() == 0 or ky.sum() == 0 or x.shape[0] < 4:
        return None, []
    ind = independent_matrix(x[:, kx], y[:, ky], alpha=alpha)
    per_kept = iter(ind.mean(axis=1))
    return float(ind.mean()), [float(next(per_kept)) if k else None for k in kx]


def label_dependent(x: np.ndarray, labels: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """(d,) bool: the Fisher z-test of feature vs label rejects independence (class index or score)."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1, 1)
    if x.shape[1] == 0:
        return np.zeros(0, dtype=bool)
    r = correlation_matrix(x, labels)[:, 0]
    return _pvalues(r, x.shape[0]) <= alpha


def l1_selection(x: np.ndarray, labels: np.ndarray, c: float = L1_C) -> np.ndarray:
    """(d,) bool: features with a non-zero weight in an L1 logistic regression (one-vs-rest over the
    classes, liblinear, standardised x) of labels on x."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    keep = x.std(axis=0) > 0
    out = np.zeros(x.shape[1], dtype=bool)
    if keep.sum() == 0 or len(np.unique(labels)) < 2:
        return out
    xs = x[:, keep]
    xs = (xs - xs.mean(axis=0)) / xs.std(axis=0)
    if labels.dtype.kind == "f" and len(np.unique(labels)) > 3:  # scores: the sign rule's classes
        labels = np.sign(labels).astype(np.int64)
    chosen = np.zeros(xs.shape[1], dtype=bool)
    classes = np.unique(labels)
    for k in classes if len(classes) > 2 else classes[1:]:  # one-vs-rest, binary L1 fits
        model = LogisticRegression(C=c, solver="liblinear", random_state=0, max_iter=1000, **_l1_kwargs())
        model.fit(xs, (labels == k).astype(np.int64))
        chosen |= np.abs(model.coef_[0]) > 0
    out[np.flatnonzero(keep)] = chosen
    return out


def _l1_kwargs() -> dict[str, Any]:
    """The L1 penalty, spelled for the installed scikit-learn (`penalty` is deprecated from 1.8)."""
    import inspect

    from sklearn.linear_model import LogisticRegression

    default = inspect.signature(LogisticRegression).parameters["penalty"].default
    return {"l1_ratio": 1.0} if default == "deprecated" else {"penalty": "l1"}


def mask_selection(mask: np.ndarray) -> np.ndarray:
    """(d,) bool from a model's (n, d) feature mask: mean over samples > 0.5."""
    return np.asarray(mask, dtype=np.float64).mean(axis=0) > 0.5


def modality_of(block: str) -> str:
    """'input/t' -> 't'; 'text' -> 't'; 'fused' -> ''."""
    last = block.rsplit("/", 1)[-1].lower()
    if last in MODALITY_WORDS:
        return MODALITY_WORDS[last]
    head = last.split("_")[0].split("-")[0]
    return MODALITY_WORDS.get(head, "")


def _jaccard(a: set[int], b: set[int]) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def analyse_features(
    per_domain: Mapping[str, Mapping[str, np.ndarray]],
    labels: Mapping[str, np.ndarray],
    *,
    columns: Mapping[str, Sequence[int]] | None = None,
    masks: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    ground_truth: Mapping[str, Mapping[str, Sequence[int]]] | None = None,
    alpha: float = ALPHA,
    l1_c: float = L1_C,
    fit: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    fit_labels: Mapping[str, np.ndarray] | None = None,
    fit_split: str = "valid",
) -> dict[str, Any]:
    """The analysis of named features (pure numpy).

    per_domain: domain -> block -> (n_domain, d) features; labels: domain -> (n_domain,) labels;
    columns: block -> the input feature index of each column (input-space blocks only);
    masks: domain -> block -> (n_domain, d) model masks (selection `model-mask`), else L1;
    ground_truth: modality -> {"invariant": [...], "spurious": [...]} (synthetic data);
    fit, fit_labels: the same blocks and labels on another split (`fit_split`) of each domain, on
    which the L1 selection is fitted; without them it is fitted on `per_domain` itself (and the
    analysis says so: `selection_fit_split` "test").
    """
    columns = dict(columns or {})
    masks = masks or {}
    domains = list(per_domain)
    blocks = sorted({b for feats in per_domain.values() for b in feats})
    out: dict[str, Any] = {
        "schema": ANALYSIS_SCHEMA, "alpha": alpha, "test": "fisher-z (no conditioning set), two-sided",
        "domains": domains,
        "blocks": {b: {"modality": modality_of(b), "dim": int(next(iter(per_domain.values()))[b].shape[1]),
                       "input_space": b in columns,
                       "selection": "model-mask" if any(b in masks.get(d, {}) for d in domains) else "l1"}
                   for b in blocks},
        "l1_c": l1_c, "selection_fit_split": fit_split if fit else "test",
        "per_domain": {}, "consistency": {}, "ground_truth": {},
    }
    selections: dict[str, dict[str, np.ndarray]] = {}
    signs: dict[str, dict[str, np.ndarray]] = {}  # domain -> block -> sign of each feature's label correlation
    for d in domains:
        feats, y = per_domain[d], np.asarray(labels[d])
        info: dict[str, Any] = {"n": int(len(y)), "blocks": {}}
        selections[d], signs[d] = {}, {}
        for b in blocks:
            x = np.asarray(feats[b], dtype=np.float64)
            signs[d][b] = np.sign(np.nan_to_num(correlation_matrix(x, y.reshape(-1, 1).astype(np.float64))[:, 0]))
            if b in masks.get(d, {}):
                sel = mask_selection(masks[d][b])
                if (~sel).any() and x.shape[0] and not varying(x)[~sel].any() and not np.any(x[:, ~sel]):
                    raise ValueError(f"block {b!r} of {d}: every masked-out feature is 0 on every sample, so the "
                                     f"features look masked; return them before the mask, or as "
                                     f"features[{(b.split('/')[0] + ':premask')!r}]")
            elif fit:
                sel = l1_selection(np.asarray(fit[d][b], dtype=np.float64), np.asarray(fit_labels[d]), l1_c)
            else:
                sel = l1_selection(x, y, l1_c)
            selections[d][b] = sel
            dep = label_dependent(x, y, alpha)
            intra, intra_per = intra_independence(x[:, sel], alpha)
            info["blocks"][b] = {
                "selected": _indices(b, np.flatnonzero(sel), columns),
                "retained": float(sel.mean()) if sel.size else None,
                "n_constant": int((~varying(x)).sum()),
                "n_constant_selected": int((~varying(x[:, sel])).sum()) if sel.any() else 0,
                "intra_independence": intra,
                "intra_independence_per_feature": intra_per,
                "label_dependence": {
                    "selected": float(dep[sel].mean()) if sel.any() else None,
                    "removed": float(dep[~sel].mean()) if (~sel).any() else None,
                    "n_selected": int(sel.sum()), "n_removed": int((~sel).sum()),
                },
            }
        cross = {}
        for i, a in enumerate(blocks):
            for b in blocks[i + 1:]:
                ma, mb = modality_of(a), modality_of(b)
                if not ma or not mb or ma == mb:
                    continue
                first, second = (a, b) if "tav".index(ma) < "tav".index(mb) else (b, a)
                xa = np.asarray(feats[first], dtype=np.float64)[:, selections[d][first]]
                xb = np.asarray(feats[second], dtype=np.float64)[:, selections[d][second]]
                ratio, per = cross_independence(xa, xb, alpha)
                cross[f"{first}{SEP}{second}"] = {"ratio": ratio, "per_feature_of_first": per}
        info["cross_independence"] = cross
        out["per_domain"][d] = info
    for b in blocks:
        sets = {d: set(np.flatnonzero(selections[d][b]).tolist()) for d in domains}
        every = set.intersection(*sets.values()) if sets else set()
        anyd = set.union(*sets.values()) if sets else set()
        same_sign = {j for j in every if len({float(signs[d][b][j]) for d in domains}) == 1}
        pairs = [_jaccard(sets[x], sets[y]) for i, x in enumerate(domains) for y in domains[i + 1:]]
        out["consistency"][b] = {
            "matrix": [[int(v) for v in selections[d][b]] for d in domains],
            "selected_in_all": _indices(b, sorted(every), columns),
            "selected_in_all_same_sign": _indices(b, sorted(same_sign), columns),
            "selected_in_any": _indices(b, sorted(anyd), columns),
            "jaccard_mean": float(np.mean(pairs)) if pairs else None,
        }
        m = modality_of(b)
        if b in columns and ground_truth and m in ground_truth:
            gt = ground_truth[m]
            inv = set(int(i) for i in gt.get("invariant", []))
            spu = set(int(i) for i in gt.get("spurious", []))
            available = set(int(i) for i in columns[b])
            inv_here = inv & available
            entry: dict[str, Any] = {"invariant": sorted(inv_here), "spurious": sorted(spu & available)}
            for suffix, positions in (("", every), ("_same_sign", same_sign)):
                chosen = set(_indices(b, sorted(positions), columns))
                tp = len(chosen & inv_here)
                entry.update({
                    f"selected{suffix}": sorted(chosen),
                    f"precision{suffix}": tp / len(chosen) if chosen else None,
                    f"recall{suffix}": tp / len(inv_here) if inv_here else None,
                    f"spurious_selected{suffix}": len(chosen & spu),
                })
            out["ground_truth"][b] = entry
    return out


def _indices(block: str, positions, columns: Mapping[str, Sequence[int]]) -> list[int]:
    """Column positions -> input feature indices for input-space blocks, else the positions."""
    cols = columns.get(block)
    return [int(cols[p]) if cols is not None else int(p) for p in positions]


def summary_line(analysis: Mapping[str, Any]) -> str:
    """One line for logs: per block the consistency Jaccard and ground-truth precision/recall."""
    parts = []
    for b, c in analysis.get("consistency", {}).items():
        text = f"{b}: {len(c['selected_in_all'])} selected in every domain"
        gt = analysis.get("ground_truth", {}).get(b)
        if gt and gt["precision"] is not None:
            text += f", precision {gt['precision']:.2f} recall {gt['recall']:.2f}"
            if gt.get("precision_same_sign") is not None:
                text += (f" (same sign: precision {gt['precision_same_sign']:.2f}"
                         f" recall {gt['recall_same_sign']:.2f})")
        parts.append(text)
    return "; ".join(parts)


# --- npz layout ---------------------------------------------------------------------------------------------


def features_arrays(per_domain: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, np.ndarray],
                    ids: Mapping[str, np.ndarray], preds: Mapping[str, np.ndarray],
                    columns: Mapping[str, Sequence[int]], masks: Mapping[str, Mapping[str, np.ndarray]],
                    epoch: int | None, rule: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "meta|domains": np.array(list(per_domain), dtype=str),
        "meta|rule": np.array([rule], dtype=str),
        "meta|epoch": np.array([-1 if epoch is None else int(epoch)], dtype=np.int64),
    }
    for d, feats in per_domain.items():
        for b, x in feats.items():
            arrays[f"{d}{SEP}{b}"] = np.asarray(x, dtype=np.float32)
        for b, m in masks.get(d, {}).items():
            arrays[f"{d}{SEP}{b}:mask"] = np.asarray(m, dtype=np.float32)
        arrays[f"{d}{SEP}y"] = np.asarray(labels[d])
        arrays[f"{d}{SEP}ids"] = np.asarray(ids[d]).astype(str)
        arrays[f"{d}{SEP}pred"] = np.asarray(preds[d], dtype=np.float32)
    for b, cols in columns.items():
        arrays[f"columns{SEP}{b}"] = np.asarray(cols, dtype=np.int64)
    return arrays


def read_features(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Inverse of `features_arrays`: {"domains", "features", "labels", "ids", "pred", "columns", "masks"}."""
    domains = [str(d) for d in arrays["meta|domains"]]
    out: dict[str, Any] = {"domains": domains, "features": {d: {} for d in domains}, "labels": {}, "ids": {},
                           "pred": {}, "columns": {}, "masks": {d: {} for d in domains},
                           "rule": str(arrays["meta|rule"][0]), "epoch": int(arrays["meta|epoch"][0])}
    for key, value in arrays.items():
        head, _, rest = key.partition(SEP)
        if head == "columns":
            out["columns"][rest] = [int(v) for v in value]
        elif head in out["features"]:
            if rest == "y":
                out["labels"][head] = value
            elif rest == "ids":
                out["ids"][head] = value
            elif rest == "pred":
                out["pred"][head] = value
            elif rest.endswith(":mask"):
                out["masks"][head][rest[: -len(":mask")]] = value
            else:
                out["features"][head][rest] = value
    return out


# --- running a model (torch; imported lazily) ---------------------------------------------------------------


def _layout(model: Any, names: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    layout_fn = getattr(model, "feature_layout", None)
    if callable(layout_fn):
        return {k: [(str(m), int(i)) for m, i in v] for k, v in layout_fn().items()}
    order, indices = getattr(model, "order", None), getattr(model, "indices", None)
    if "input" in names and order is not None and isinstance(indices, dict):
        spec = getattr(model, "spec", None)
        if spec is not None and "t" in order and getattr(spec, "text_kind", "features") == "tokens":
            return {}  # text columns are embedding dims, not input features
        return {"input": [(m, int(i)) for m in order for i in indices[m]]}
    return {}


def _split_blocks(feats: dict[str, np.ndarray], layout: dict[str, list[tuple[str, int]]]
                  ) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    out: dict[str, np.ndarray] = {}
    columns: dict[str, list[int]] = {}
    for name, x in feats.items():
        lay = layout.get(name)
        if not lay or len(lay) != x.shape[1]:
            out[name] = x
            continue
        for m in dict.fromkeys(m for m, _ in lay):
            pos = [j for j, (mm, _) in enumerate(lay) if mm == m]
            out[f"{name}/{m}"] = x[:, pos]
            columns[f"{name}/{m}"] = [lay[j][1] for j in pos]
    return out, columns


def collect(model: Any, data: Any, batch_size: int, device: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Named features ((N, D) each; time-averaged when (B, T, D)) and predictions over a TensorSplit."""
    from msabench.engine.loop import infer

    pred, feats = infer(model, data, batch_size, device, with_features=True)
    return feats, pred


def _blocks(model: Any, feats: dict[str, np.ndarray]):
    """(blocks, columns, mask blocks) of one split's named features; a block's `:premask` values
    replace it (the analysis reads features before their mask)."""
    mask_feats = {k[: -len(":mask")]: v for k, v in feats.items() if k.endswith(":mask")}
    premask = {k[: -len(":premask")]: v for k, v in feats.items() if k.endswith(":premask")}
    plain = {k: premask.get(k, v) for k, v in feats.items() if not k.endswith((":mask", ":premask"))}
    layout = _layout(model, list(plain))
    blocks, columns = _split_blocks(plain, layout)
    mblocks, _ = _split_blocks(mask_feats, layout)
    return blocks, columns, mblocks


def run_analysis(model: Any, spec: Any, test_sets: Sequence[Any], *, ground_truth: Mapping[str, Any] | None,
                 epoch: int | None, rule: str, device: Any,
                 fit_sets: Sequence[Any] = ()) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(features.npz arrays, analysis.json dict) of `model` over the test sets (one per domain); the
    L1 selection is fitted on `fit_sets` (the valid split of each domain) when given."""
    batch_size = int(spec.config.get("train.eval_batch_size", 256))
    per_domain, labels, ids, preds, masks = {}, {}, {}, {}, {}
    columns: dict[str, list[int]] = {}
    for es in test_sets:
        feats, pred = collect(model, es.data, batch_size, device)
        if not feats:
            from msabench.core.errors import UserError

            raise UserError(f"model {spec.model!r} returns no named features (ModelOutput.features); "
                            f"feature-analysis needs them")
        per_domain[es.domain], columns, masks[es.domain] = _blocks(model, feats)
        labels[es.domain] = np.asarray(es.data.y)
        ids[es.domain] = es.data.ids
        preds[es.domain] = pred
    fit, fit_labels = {}, {}
    for es in fit_sets:
        if es.domain in per_domain:
            fit[es.domain] = _blocks(model, collect(model, es.data, batch_size, device)[0])[0]
            fit_labels[es.domain] = np.asarray(es.data.y)
    if set(fit) != set(per_domain):
        fit, fit_labels = {}, {}
    analysis = analyse_features(per_domain, labels, columns=columns, masks=masks, ground_truth=ground_truth,
                                fit=fit or None, fit_labels=fit_labels or None)
    analysis.update({"run_id": spec.run_id, "model": spec.label, "protocol": spec.protocol, "setting": spec.setting,
                     "rule": rule, "epoch": epoch, "split": "test",
                     "sources": list(spec.source_domains), "targets": list(spec.target_domains)})
    arrays = features_arrays(per_domain, labels, ids, preds, columns, masks, epoch, rule)
    return arrays, analysis


def _ground_truth(datasets: Sequence[Any]) -> dict[str, Any] | None:
    for d in datasets:
        gt = getattr(d, "ground_truth", None) or {}
        truth = gt.get("features") or gt.get("modalities")  # synth.py writes "modalities"
        if truth:
            return {m: {k: list(g.get(k, [])) for k in ("invariant", "spurious", "style")} for m, g in truth.items()}
    return None


def _primary(spec: Any, available: Sequence[str]) -> str | None:
    for rule in spec.selection_rules:
        if rule in available:
            return rule
    return None


def analyse_run(spec: Any, run_dir: Any, model: Any, datasets: Sequence[Any], eval_sets: Sequence[Any],
                result: Any, device: Any) -> dict[str, Any]:
    """Runner hook: load the primary rule's weights, analyse the test split of every domain, write
    features.npz and analysis.json into `run_dir`. Returns the analysis."""
    rule = _primary(spec, list(result.checkpoints))
    if rule is not None:
        model.load_state_dict(result.checkpoints[rule])
    else:
        rule = "last"
    epoch = result.chosen_epochs.get(rule, result.epochs_run - 1)
    test_sets = [es for es in eval_sets if es.split == "test" and float(es.rate) == float(spec.rate)]
    fit_sets = [es for es in eval_sets if es.split == "valid" and float(es.rate) == float(spec.rate)]
    arrays, analysis = run_analysis(model, spec, test_sets, ground_truth=_ground_truth(datasets), epoch=epoch,
                                    rule=rule, device=device, fit_sets=fit_sets)
    run_dir.write_npz("features.npz", arrays)
    run_dir.write_json("analysis.json", analysis)
    return analysis


def analyse_stored_run(out: str, run_id: str, *, data_root: str | None = None, device: str = "auto") -> dict[str, Any]:
    """`--from-run`: analyse a finished run's checkpoint (its primary rule's), writing features.npz
    and analysis.json into that run's directory."""
    from msabench.core.errors import UserError
    from msabench.engine.runner import build_model, prepare_tensors, resolve_device
    from msabench.evaluation.selection import select_epoch
    from msabench.store.runs import Store

    store = Store(out)
    rd = store.run(run_id)
    if not rd.path.is_dir():
        raise UserError(f"--from-run {run_id}: no such run in {out}; `msabench status --out {out}` lists the store")
    if not rd.is_done():
        raise UserError(f"--from-run {run_id}: the run is not finished; finish it first (msabench run ... resumes)")
    spec = rd.read_spec()
    rule = _primary(spec, rd.checkpoint_rules())
    if rule is None:
        raise UserError(f"--from-run {run_id}: the run has no checkpoint of its rules "
                        f"{', '.join(spec.selection_rules)}")
    dev = resolve_device(device)
    model, datasets, tokens = build_model(spec, data_root)
    model.load_state_dict(rd.read_checkpoint(rule))
    model.to(dev)
    _, eval_sets = prepare_tensors(spec, datasets, tokens)
    records = rd.read_records()
    sources = spec.train_domains or spec.source_domains or spec.datasets[:1]
    epoch = select_epoch(records, rule, task=spec.task, sources=spec.valid_domains or sources,
                         targets=spec.target_domains, train_rate=spec.rate)
    test_sets = [es for es in eval_sets if es.split == "test" and float(es.rate) == float(spec.rate)]
    fit_sets = [es for es in eval_sets if es.split == "valid" and float(es.rate) == float(spec.rate)]
    arrays, analysis = run_analysis(model, spec, test_sets, ground_truth=_ground_truth(datasets), epoch=epoch,
                                    rule=rule, device=dev, fit_sets=fit_sets)
    analysis["from_run"] = True
    rd.write_npz("features.npz", arrays)
    rd.write_json("analysis.json", analysis)
    return analysis
