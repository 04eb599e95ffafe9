"""Appeal category classifier for intelligent dispatch (智能派单): char n-gram TF-IDF + calibrated linear SVM.

The model is trained on jieba-segmented, stopword-free text but must work on raw appeals (title + detail with
punctuation, digits and Latin letters); `normalize` maps both forms onto the same CJK-only character stream.
Scores of a LinearSVC are turned into probabilities by a multinomial logistic calibrator fitted on out-of-fold
scores, and the auto-dispatch threshold is the lowest max-probability whose out-of-fold precision reaches the
target precision.
"""

from __future__ import annotations

import csv
import json
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

__all__ = [
    "LABELS",
    "CategoryModel",
    "auto_threshold",
    "dedupe_rows",
    "evaluate",
    "normalize",
    "read_rows",
    "row_text",
    "train_from_csv",
]

LABELS: tuple[str, ...] = (
    "城乡建设",
    "劳动和社会保障",
    "教育文体",
    "商贸旅游",
    "环境保护",
    "卫生计生",
    "交通运输",
)

Progress = Callable[[str], None]

_NON_CJK = re.compile(r"[^\u3400-\u4dbf\u4e00-\u9fff]+")
_EXCEL_CR = re.compile(r"_x000d_", re.IGNORECASE)
_FORMAT_VERSION = 1


def normalize(text: str | None) -> str:
    """Map raw or segmented appeal text to a CJK-only, whitespace-free, NFKC (half-width) character string."""
    folded = unicodedata.normalize("NFKC", _EXCEL_CR.sub("", text or ""))
    return _NON_CJK.sub("", folded)


def auto_threshold(max_prob: Sequence[float], correct: Sequence[bool], target: float = 0.99) -> float:
    """Lowest max-probability threshold at or above which predictions reach `target` precision, else 1.0."""
    p = np.asarray(max_prob, dtype=float)
    ok = np.asarray(correct, dtype=bool)
    if p.size == 0:
        return 1.0
    order = np.argsort(-p, kind="stable")
    p_sorted, ok_sorted = p[order], ok[order]
    precision = np.cumsum(ok_sorted) / np.arange(1, p.size + 1)
    # only cut between distinct probabilities: the last index of each run of equal values
    last_of_run = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    good = np.flatnonzero(last_of_run & (precision >= target))
    return float(p_sorted[good[-1]]) if good.size else 1.0


def _auto_stats(max_prob: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float]:
    """Share of appeals at or above the threshold and the precision among them (0.0 when none)."""
    auto = max_prob >= threshold
    rate = float(auto.mean()) if auto.size else 0.0
    precision = float(correct[auto].mean()) if auto.any() else 0.0
    return rate, precision


@dataclass
class CategoryModel:
    """Char n-gram TF-IDF + LinearSVC, out-of-fold multinomial calibration and an auto-dispatch threshold."""

    C: float = 1.0
    ngram_range: tuple[int, int] = (1, 3)
    min_df: int = 2
    target_precision: float = 0.99
    cv: int = 5
    random_state: int = 0
    labels: list[str] = field(default_factory=list)
    threshold: float = 1.0
    metrics: dict[str, Any] = field(default_factory=dict)
    _vectorizer: TfidfVectorizer | None = field(default=None, repr=False)
    _coef: Any = field(default=None, repr=False)  # np.ndarray once fitted
    _intercept: Any = field(default=None, repr=False)  # np.ndarray once fitted
    _cal_coef: Any = field(default=None, repr=False)  # np.ndarray once fitted
    _cal_intercept: Any = field(default=None, repr=False)  # np.ndarray once fitted
    _features: Any = field(default=None, repr=False)  # np.ndarray once fitted

    # ---------------------------------------------------------------- training
    def fit(
        self, texts: Sequence[str], labels: Sequence[str], progress: Progress | None = None
    ) -> CategoryModel:
        """Fit vectorizer, SVM and calibrator; choose the threshold and fill `metrics` by cross-validation.

        The (label-free) vectorizer is fitted once on all texts before the folds; SVM and calibrator are
        cross-validated, and the threshold comes from nested out-of-fold calibrated probabilities.
        """
        say = progress or (lambda _msg: None)
        started = time.perf_counter()
        if len(texts) != len(labels):
            raise ValueError("texts and labels differ in length")
        y = np.asarray([str(label) for label in labels])
        classes, counts = np.unique(y, return_counts=True)
        if classes.size < 2:
            raise ValueError("need at least two categories")
        say(f"normalizing {len(texts)} texts")
        docs = [normalize(t) for t in texts]
        self._vectorizer = TfidfVectorizer(
            analyzer="char",
            ngram_range=self.ngram_range,
            min_df=self.min_df if len(docs) >= 200 else 1,  # tiny corpora keep every n-gram
            sublinear_tf=True,
            lowercase=False,
            dtype=np.float32,
        )
        say("vectorizing (char n-gram TF-IDF)")
        x = self._vectorizer.fit_transform(docs)
        n_splits = int(min(self.cv, counts.min()))
        if n_splits < 2:
            raise ValueError("every category needs at least two examples")
        folds = list(StratifiedKFold(n_splits, shuffle=True, random_state=self.random_state).split(x, y))
        oof = np.zeros((len(y), classes.size), dtype=np.float64)
        for i, (tr, te) in enumerate(folds, 1):
            say(f"cross-validation fold {i}/{n_splits}")
            svm = LinearSVC(C=self.C, random_state=self.random_state).fit(x[tr], y[tr])
            oof[te] = _as_2d(svm.decision_function(x[te]), svm.classes_, classes)
        say("calibrating probabilities")
        oof_prob = np.zeros_like(oof)
        for tr, te in folds:
            cal = _calibrator().fit(oof[tr], y[tr])
            oof_prob[te] = _as_prob(cal.predict_proba(oof[te]), cal.classes_, classes)
        pred = classes[oof_prob.argmax(axis=1)]
        max_prob = oof_prob.max(axis=1)
        correct = pred == y
        self.threshold = auto_threshold(max_prob, correct, self.target_precision)
        auto_rate, auto_precision = _auto_stats(max_prob, correct, self.threshold)
        say("fitting final model")
        svm = LinearSVC(C=self.C, random_state=self.random_state).fit(x, y)
        cal = _calibrator().fit(oof, y)
        self.labels = [str(c) for c in classes]
        self._coef = np.ascontiguousarray(_coef_2d(svm.coef_).T, dtype=np.float32)
        self._intercept = np.atleast_1d(svm.intercept_).astype(np.float64)
        self._cal_coef = np.asarray(cal.coef_, dtype=np.float64)
        self._cal_intercept = np.asarray(cal.intercept_, dtype=np.float64)
        self._features = None
        self.__dict__.pop("_memo", None)
        self.__dict__.pop("_lookup", None)
        self._gram_lookup(self._vectorizer)  # built now, so it is saved with the model
        if hasattr(self._vectorizer, "stop_words_"):
            self._vectorizer.stop_words_ = None  # pruned terms are not needed to transform
        self.metrics = {
            "evaluated_by": f"{n_splits}-fold cross-validation on the training data",
            "macro_f1": round(float(f1_score(y, pred, average="macro")), 4),
            "accuracy": round(float(accuracy_score(y, pred)), 4),
            "auto_rate": round(auto_rate, 4),
            "auto_precision": round(auto_precision, 4),
            "threshold": round(self.threshold, 6),
            "target_precision": self.target_precision,
            "n_train": len(y),
            "n_features": int(x.shape[1]),
            "labels": self.labels,
            "train_seconds": round(time.perf_counter() - started, 2),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "sklearn": sklearn.__version__,
        }
        say("done")
        return self

    # -------------------------------------------------------------- inference
    def _check(self) -> TfidfVectorizer:
        """Return the fitted vectorizer or raise if the model is not trained."""
        if self._vectorizer is None or self._coef is None:
            raise RuntimeError("CategoryModel is not fitted")
        return self._vectorizer

    def _tfidf(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Sparse TF-IDF row of one text as (feature indices, l2-normalized weights), like the vectorizer."""
        memo = self.__dict__.get("_memo")
        if memo is not None and memo[0] == text:  # routing explains the text it has just scored
            return memo[1], memo[2]
        vectorizer = self._check()
        doc = normalize(text)
        lookup = self._gram_lookup(vectorizer)
        if lookup is not None:  # n-grams as integer codes, counted and looked up (binary search) in numpy
            keys, ids = lookup
            codes, first, tf = np.unique(
                _gram_codes(doc, *vectorizer.ngram_range), return_index=True, return_counts=True
            )
            pos = np.minimum(np.searchsorted(keys, codes), keys.size - 1)
            hit = keys[pos] == codes
            idx, first, tf = ids[pos[hit]], first[hit], tf[hit]
        else:
            lo, hi = vectorizer.ngram_range
            grams = [doc[i : i + n] for n in range(lo, hi + 1) for i in range(len(doc) - n + 1)]
            looked_up = map(vectorizer.vocabulary_.get, grams, repeat(-1, len(grams)))
            found = np.fromiter(looked_up, dtype=np.intp, count=len(grams))
            idx, first, tf = np.unique(found[found >= 0], return_index=True, return_counts=True)
        if not idx.size:
            return np.zeros(0, dtype=np.intp), np.zeros(0)
        order = np.argsort(first, kind="stable")  # first-occurrence order: top_terms ties keep reading order
        idx, tf = idx[order], tf[order]
        w = (np.log(tf) + 1.0) * vectorizer.idf_[idx]
        w = w / np.sqrt(w @ w)
        self.__dict__["_memo"] = (text, idx, w)
        return idx, w

    def _gram_lookup(self, vectorizer: TfidfVectorizer) -> tuple[np.ndarray, np.ndarray] | None:
        """Sorted n-gram codes of the vocabulary and their feature indices (built by `fit`, saved with it).

        None when some term cannot be coded (longer than 3 characters or outside the BMP): then `_tfidf`
        looks n-grams up in the vocabulary dict instead.
        """
        if "_lookup" not in self.__dict__:
            vocab = vectorizer.vocabulary_
            codes = np.zeros(len(vocab), dtype=np.int64)
            ids = np.zeros(len(vocab), dtype=np.intp)
            lookup: tuple[np.ndarray, np.ndarray] | None = None
            for row, (term, j) in enumerate(vocab.items()):
                code = _term_code(term)
                if code is None:
                    break
                codes[row], ids[row] = code, j
            else:
                order = np.argsort(codes)
                lookup = (codes[order], ids[order]) if codes.size else None
            self.__dict__["_lookup"] = lookup
        result: tuple[np.ndarray, np.ndarray] | None = self.__dict__["_lookup"]
        return result

    def _proba_matrix(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probability matrix (rows: texts, columns: `labels`), computed text by text."""
        self._check()
        coef = self._coef
        scores = np.empty((len(texts), coef.shape[1]))
        for row, text in enumerate(texts):
            idx, w = self._tfidf(text)
            scores[row] = w @ coef[idx] if idx.size else 0.0
        scores += self._intercept
        if scores.shape[1] == 1:  # binary SVM: one score for labels[1]
            scores = np.c_[-scores, scores]
        z = scores @ self._cal_coef.T + self._cal_intercept
        if z.shape[1] == 1:  # binary logistic calibrator
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.c_[1.0 - p1, p1]
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Calibrated category probabilities per text, each a dict label -> probability summing to 1."""
        return [dict(zip(self.labels, map(float, row), strict=True)) for row in self._proba_matrix(texts)]

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float, bool]]:
        """(label, probability, auto_dispatch) per text; auto_dispatch when probability >= threshold."""
        p = self._proba_matrix(texts)
        best = p.argmax(axis=1)
        return [(self.labels[j], float(p[i, j]), bool(p[i, j] >= self.threshold)) for i, j in enumerate(best)]

    def top_terms(self, text: str, label: str, k: int = 5) -> list[str]:
        """Non-overlapping char n-grams of `text` that pushed most towards `label` (multi-character first)."""
        vectorizer = self._check()
        j = self.labels.index(label)
        if self._features is None:
            self._features = vectorizer.get_feature_names_out()
        indices, values = self._tfidf(text)
        rows = self._coef[indices]  # only the text's own features: the full matrix is large
        if rows.shape[1] == 1:  # binary SVM: one column, positive towards labels[1]
            weights = rows[:, 0] if j == 1 else -rows[:, 0]
        else:
            others = [c for c in range(rows.shape[1]) if c != j]
            weights = rows[:, j] - rows[:, others].mean(axis=1)
        contrib = values * weights
        terms = [str(self._features[i]) for i in indices]
        order = np.lexsort((-np.array([len(t) for t in terms]), -contrib))
        positive = [terms[pos] for pos in order if contrib[pos] > 0]
        chosen: list[str] = []
        # multi-character grams read as words to staff; single characters only fill up
        for term in [t for t in positive if len(t) > 1] + [t for t in positive if len(t) == 1]:
            if len(chosen) >= k:
                break
            if not any(term in c or c in term for c in chosen):
                chosen.append(term)
        return chosen

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the model (joblib) to `path` and its metrics as JSON next to it (same stem, .json)."""
        self._check()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        state = {"format": _FORMAT_VERSION, "sklearn": sklearn.__version__, **self.__dict__}
        state["_features"] = None
        state.pop("_memo", None)
        joblib.dump(state, target, compress=3)
        meta = {"threshold": self.threshold, "labels": self.labels, "metrics": self.metrics}
        meta_text = json.dumps(meta, ensure_ascii=False, indent=2)
        target.with_suffix(".json").write_text(meta_text, encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | Path) -> CategoryModel:
        """Load a model written by `save`."""
        state = dict(joblib.load(Path(path)))
        if state.pop("format", None) != _FORMAT_VERSION:
            raise ValueError(f"{path}: unknown model format")
        state.pop("sklearn", None)
        model = cls()
        model.__dict__.update(state)
        return model


def _term_code(term: str) -> int | None:
    """Integer code of a 1-3 character BMP n-gram (16 bits per character), None if it has no code."""
    if not 0 < len(term) <= 3:
        return None
    code = 0
    for ch in term:
        o = ord(ch)
        if not 0 < o < 0x10000:
            return None
        code = (code << 16) | o
    return code


def _gram_codes(doc: str, lo: int, hi: int) -> np.ndarray:
    """Codes (as `_term_code`) of the doc's n-grams, n from lo to hi, grouped by n then in reading order."""
    chars = np.frombuffer(doc.encode("utf-16-le"), dtype=np.uint16).astype(np.int64)  # normalize: BMP only
    parts = [np.zeros(0, dtype=np.int64)]
    for n in range(lo, min(hi, 3) + 1):
        m = chars.size - n + 1
        if m <= 0:
            break
        code = chars[:m].copy()
        for k in range(1, n):
            code = (code << 16) | chars[k : k + m]
        parts.append(code)
    return np.concatenate(parts)


def _calibrator() -> LogisticRegression:
    """Multinomial logistic regression mapping SVM scores to probabilities."""
    return LogisticRegression(C=1.0, max_iter=1000)


def _coef_2d(coef: np.ndarray) -> np.ndarray:
    """SVM coefficients as (n_classes_or_1, n_features)."""
    return np.atleast_2d(np.asarray(coef))


def _as_2d(scores: np.ndarray, fold_classes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Decision scores of a fold model as (n, n_classes) aligned to `classes` (binary: ±score)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = np.c_[-s, s]
    out = np.full((s.shape[0], classes.size), -10.0)
    out[:, np.searchsorted(classes, fold_classes)] = s
    return out


def _as_prob(prob: np.ndarray, fold_classes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Probabilities of a fold calibrator aligned to `classes` (absent classes get 0)."""
    out = np.zeros((prob.shape[0], classes.size))
    out[:, np.searchsorted(classes, fold_classes)] = prob
    return out


def row_text(row: Mapping[str, str | None]) -> str:
    """Model input of a CSV row: title + text_raw when text_raw is present, else title + text."""
    title = (row.get("title") or "").strip()
    raw = (row.get("text_raw") or "").strip()
    body = raw or (row.get("text") or "").strip()
    return f"{title} {body}".strip()


def dedupe_rows(rows: Iterable[Mapping[str, str | None]]) -> list[Mapping[str, str | None]]:
    """Keep the first row of every non-empty `dup_group` (rows without a group are all kept)."""
    seen: set[str] = set()
    kept: list[Mapping[str, str | None]] = []
    for row in rows:
        group = (row.get("dup_group") or "").strip()
        if group:
            if group in seen:
                continue
            seen.add(group)
        kept.append(row)
    return kept


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """Read a UTF-8 (optionally BOM) CSV file into dict rows."""
    with Path(path).open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def train_from_csv(path: str | Path, progress: Progress | None = None, **params: Any) -> CategoryModel:
    """Train a CategoryModel on a CSV with columns title (optional), text and/or text_raw, label."""
    rows = [r for r in dedupe_rows(read_rows(path)) if (r.get("label") or "").strip()]
    texts = [row_text(r) for r in rows]
    labels = [(r.get("label") or "").strip() for r in rows]
    return CategoryModel(**params).fit(texts, labels, progress=progress)


def evaluate(
    model: CategoryModel, rows: Iterable[tuple[str, str] | Mapping[str, str | None]]
) -> dict[str, float]:
    """Accuracy, macro-F1, auto-dispatch rate/precision at the threshold, ms per single prediction."""
    texts: list[str] = []
    gold: list[str] = []
    for row in rows:
        if isinstance(row, Mapping):
            texts.append(row_text(row))
            gold.append(str(row.get("label") or "").strip())
        else:
            texts.append(row[0])
            gold.append(str(row[1]))
    pred: list[str] = []
    max_prob: list[float] = []
    started = time.perf_counter()
    for text in texts:  # one appeal at a time, as in production
        probs = model.predict_proba([text])[0]
        best = max(probs, key=probs.__getitem__)
        pred.append(best)
        max_prob.append(probs[best])
    elapsed = time.perf_counter() - started
    n = len(texts)
    if n == 0:
        return {
            "n": 0,
            "accuracy": 0.0,
            "macro_f1": 0.0,
            "auto_rate": 0.0,
            "auto_precision": 0.0,
            "ms_per_appeal": 0.0,
        }
    correct = np.asarray(pred) == np.asarray(gold)
    auto_rate, auto_precision = _auto_stats(np.asarray(max_prob), correct, model.threshold)
    return {
        "n": n,
        "accuracy": round(float(correct.mean()), 4),
        "macro_f1": round(float(f1_score(gold, pred, average="macro")), 4),
        "auto_rate": round(auto_rate, 4),
        "auto_precision": round(auto_precision, 4),
        "ms_per_appeal": round(elapsed * 1000 / n, 3),
    }
