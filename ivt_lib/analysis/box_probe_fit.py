"""The box probes' fitting (:mod:`ivt_lib.analysis.box_probe`): regularized linear probes, nested cross-validation.

Every probe is scored by an **outer** ``GroupKFold`` by scene; everything the probe learns or selects is fitted on
the outer training rows only, its hyper-parameters by an **inner** ``GroupKFold`` by scene inside them:

* ``grid`` (a whole grid of tokens, thousands of dims for a few hundred rows): StandardScaler -> PCA -> logistic
  regression (classification) or ridge (offset). The number of components (from :data:`KS`, at most
  ``min(64, inner training rows / 4)``) and C (:data:`CS`) or alpha (:data:`ALPHAS`) are chosen by inner CV
  (log-loss / squared error). The scaler and the PCA are refitted inside every inner and outer training set.
* ``pooled`` (the tokens under the box, averaged; a few hundred dims): StandardScaler -> logistic / ridge, C or alpha
  chosen by inner CV.
* ``best cell`` (one cell of the grid at a time): StandardScaler -> ridge (a ridge classifier on +-1 labels for the
  classification questions: closed form, so all cells x alphas are cheap); the cell *and* alpha are chosen by inner
  CV, so the reported accuracy is not a maximum over cells of test scores.

Accuracies carry Wilson intervals; an RMSE carries the RMSE of guessing (the outer training mean) and their ratio.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.stats import proportion_ci

KS = (4, 8, 16, 32, 64)
CS = tuple(np.logspace(-4, 1, 6))
ALPHAS = tuple(np.logspace(-2, 6, 17))
INNER_FOLDS = 3


def _split(groups: np.ndarray, folds: int):
    from sklearn.model_selection import GroupKFold

    folds = min(folds, len(np.unique(groups)))
    return list(GroupKFold(folds).split(np.zeros(len(groups)), groups=groups))


def _scale(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = a.mean(0), a.std(0)
    sd[sd < 1e-8] = 1.0
    return (a - mu) / sd, (b - mu) / sd


def _centred_scores(g_tt: np.ndarray, g_et: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA scores (first ``k`` components of the training rows) from Gram matrices: ``g_tt`` training x training,
    ``g_et`` evaluated x training (uncentred dot products). Exactly ``PCA(k).fit(train).transform`` up to signs."""
    col, tot = g_tt.mean(0), g_tt.mean()
    kc = g_tt - col[None] - col[:, None] + tot
    ke = g_et - g_et.mean(1, keepdims=True) - col[None] + tot
    lam, u = np.linalg.eigh(kc)
    k = max(1, min(k, int((lam > 1e-9 * lam[-1]).sum())))
    lam, u = lam[::-1][:k], u[:, ::-1][:, :k]
    return u * np.sqrt(lam), ke @ u / np.sqrt(lam)


def _ks(n_train: int) -> list[int]:
    cap = max(2, min(max(KS), n_train // 4))
    return sorted({k for k in KS if k <= cap} | {cap})


def _inner_loss(a, ya, b, yb, ks, task: str) -> np.ndarray:
    """Inner-fold loss of every (k, C) [classify] or (k, alpha) [regress] on ``a`` -> ``b`` (columns = components)."""
    from sklearn.linear_model import LogisticRegression

    out = np.full((len(ks), len(CS) if task == "classify" else len(ALPHAS)), np.inf)
    for i, k in enumerate(ks):
        if k > a.shape[1]:
            continue
        if task == "classify":
            for j, c in enumerate(CS):
                p = LogisticRegression(C=c, max_iter=2000).fit(a[:, :k], ya).predict_proba(b[:, :k])[:, 1]
                p = np.clip(p, 1e-6, 1 - 1e-6)
                out[i, j] = -np.mean(yb * np.log(p) + (1 - yb) * np.log(1 - p))
        else:
            out[i] = np.mean((_ridge_path(a[:, :k], ya, b[:, :k]) - yb[:, None]) ** 2, axis=0)
    return out


def _fit_predict(a, ya, b, k: int, j: int, task: str) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    if task == "classify":
        return LogisticRegression(C=CS[j], max_iter=2000).fit(a[:, :k], ya).predict(b[:, :k])
    return _ridge_path(a[:, :k], ya, b[:, :k])[:, j]


def nested_predict(X: np.ndarray, y: np.ndarray, groups: np.ndarray, task: str, folds: int = 5,
                   pca: bool = True, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Out-of-fold predictions of the scaler -> [PCA ->] logistic / ridge probe, hyper-parameters by inner CV.

    The scaler is fitted on each outer training set; the PCA on each inner and outer training set (through Gram
    matrices, so one product per outer fold serves all of them)."""
    pred, chosen = np.zeros(len(y), dtype=float), []
    for tr, te in _split(groups, folds):
        a, b = _scale(np.asarray(X[tr], np.float32), np.asarray(X[te], np.float32))
        inner = _split(groups[tr], INNER_FOLDS)
        ks = _ks(min(len(i) for i, _ in inner)) if pca else [a.shape[1]]
        g = (a @ a.T).astype(np.float64) if pca else None
        loss = 0.0
        for itr, iva in inner:
            if pca:
                za, zb = _centred_scores(g[np.ix_(itr, itr)], g[np.ix_(iva, itr)], max(ks))
            else:
                za, zb = _scale(a[itr], a[iva])
            loss = loss + _inner_loss(za, y[tr][itr], zb, y[tr][iva], ks, task)
        i, j = np.unravel_index(np.argmin(loss), loss.shape)
        if pca:
            za, zb = _centred_scores(g, (b @ a.T).astype(np.float64), ks[i])
        else:
            za, zb = a, b
        pred[te] = _fit_predict(za, y[tr], zb, ks[i], j, task)
        chosen.append({"k": int(za.shape[1]) if pca else None,
                       ("C" if task == "classify" else "alpha"): float((CS if task == "classify" else ALPHAS)[j])})
    return pred, chosen


def _ridge_path(a: np.ndarray, ya: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Predictions on ``b`` of ridge fitted on ``a`` (both scaled) for every alpha: ``(len(b), len(ALPHAS))``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    lam, v = np.linalg.eigh(a.T @ a)  # a is centred (scaled features or PCA scores): no intercept column needed
    vy = v.T @ (a.T @ (ya - ya.mean()))
    coef = v @ (vy[:, None] / (np.clip(lam, 0, None)[:, None] + np.asarray(ALPHAS)[None]))
    return b @ coef + ya.mean()


def cell_predict(X: np.ndarray, n_cells: int, y: np.ndarray, groups: np.ndarray, task: str, folds: int = 5
                 ) -> tuple[np.ndarray, list[dict]]:
    """Out-of-fold predictions of the best single cell's ridge probe (cell and alpha chosen by inner CV)."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), n_cells, -1)
    t = (2.0 * y - 1.0) if task == "classify" else y.astype(float)
    pred, chosen = np.zeros(len(y), dtype=float), []
    for tr, te in _split(groups, folds):
        loss, xt = np.zeros((n_cells, len(ALPHAS))), X[tr]
        for itr, iva in _split(groups[tr], INNER_FOLDS):
            for c in range(n_cells):
                a, b = _scale(xt[itr, c], xt[iva, c])
                loss[c] += np.mean((_ridge_path(a, t[tr][itr], b) - t[tr][iva, None]) ** 2, axis=0)
        c, j = np.unravel_index(np.argmin(loss), loss.shape)
        a, b = _scale(xt[:, c], X[te][:, c])
        p = _ridge_path(a, t[tr], b)[:, j]
        pred[te] = (p > 0).astype(float) if task == "classify" else p
        chosen.append({"cell": int(c), "alpha": float(ALPHAS[j])})
    return pred, chosen


def accuracy(pred: np.ndarray, y: np.ndarray, chosen: list[dict]) -> dict:
    hit = int((pred == y).sum())
    return {"acc": hit / len(y), "ci": list(proportion_ci(hit, len(y))), "n": len(y), "chosen": chosen}


def rmse(pred: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, chosen: list[dict]) -> dict:
    guess = np.zeros(len(y))
    for tr, te in _split(groups, folds):
        guess[te] = y[tr].mean()
    r, g = float(np.sqrt(np.mean((pred - y) ** 2))), float(np.sqrt(np.mean((guess - y) ** 2)))
    return {"rmse": r, "guess_rmse": g, "ratio": r / g if g > 0 else None, "n": len(y), "chosen": chosen}


def classify(X, y, groups, folds: int = 5, kind: str = "grid", n_cells: int = 1, seed: int = 0) -> dict:
    """Accuracy (Wilson CI) of the ``kind`` probe (``grid``, ``pooled`` or ``cell``) of binary ``y``."""
    if kind == "cell":
        pred, chosen = cell_predict(X, n_cells, y, groups, "classify", folds)
    else:
        pred, chosen = nested_predict(X, y, groups, "classify", folds, kind == "grid", seed)
    return accuracy(pred, y, chosen)


def regress(X, y, groups, folds: int = 5, kind: str = "grid", n_cells: int = 1, seed: int = 0) -> dict:
    """RMSE of the ``kind`` probe of ``y`` beside guessing's (the outer training mean) and their ratio."""
    if kind == "cell":
        pred, chosen = cell_predict(X, n_cells, y, groups, "regress", folds)
    else:
        pred, chosen = nested_predict(X, y, groups, "regress", folds, kind == "grid", seed)
    return rmse(pred, y, groups, folds, chosen)


def probe_all(feats: dict, shifts: Sequence[int], offsets: Sequence[int], folds: int = 5, seed: int = 0,
              cells: bool = False) -> dict:
    """``{place: {question: result}}`` for every place (grid, pooled and, with ``cells``, ``<place>/cell``: the best
    single cell, chosen inside the cross-validation) and the three questions. A place whose
    features equal an earlier place's (``lm_0`` is ``merged``) gets that place's results, marked ``same_as``."""
    rows = feats["rows"]
    variant = np.array([r["variant"] for r in rows])
    scene = np.array([r["scene"] for r in rows])
    dx = np.array([r["dx"] for r in rows], dtype=float)
    offset = np.isin(variant, ["gt", *(f"dx_{o}" for o in offsets)])
    jobs = [(p, p.split("/")[0], "pooled" if p.endswith("/pooled") else "grid") for p in feats["features"]]
    if cells:
        jobs += [(f"{p}/cell", p, "cell") for p, _, kind in list(jobs) if kind == "grid"]
    out, seen, alias = {}, [], {}
    for place, src, kind in jobs:
        X = feats["features"][src if kind == "cell" else place]
        if kind == "cell":
            same = f"{alias[src]}/cell" if src in alias else None
        else:
            same = next((q for q, Y in seen if Y.shape == X.shape and np.allclose(Y, X, rtol=0, atol=1e-5)), None)
            seen.append((place, X))
            if same is not None and kind == "grid":
                alias[place] = same
        if same is not None:
            out[place] = {**out[same], "same_as": same}
            continue
        n_cells, res = feats.get("cells", {}).get(src, 1), {}
        m = np.isin(variant, ["none", "gt"])
        res["drawn"] = classify(X[m], (variant[m] == "gt").astype(int), scene[m], folds, kind, n_cells, seed)
        for d in shifts:
            m = np.isin(variant, ["gt", f"shift_{d}"])
            res[f"aligned_vs_{d}px"] = classify(X[m], (variant[m] == "gt").astype(int), scene[m], folds, kind,
                                                n_cells, seed)
        res["offset"] = regress(X[offset], dx[offset], scene[offset], folds, kind, n_cells, seed)
        out[place] = res
    return out
