"""Tests of the dispatch category classifier on the project's own illustrative appeals (no shared data)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC

from xihu.dispatch.classifier import (
    LABELS,
    CategoryModel,
    _fit_confidence,
    _with_confidence,
    auto_threshold,
    dedupe_rows,
    evaluate,
    normalize,
    train_from_csv,
)
from xihu.dispatch.demo_examples import DEMO_EXAMPLES

# new appeals, not in the training examples, each clearly in one category
CLEAR_CASES = [
    ("小区门口路灯坏了好几天", "晚上小区门口黑漆漆的，路灯一直不亮，请尽快维修。", "城乡建设"),
    ("老板拖欠工资不发", "公司已经三个月没发工资了，也没有缴纳社保，请劳动监察帮忙讨薪。", "劳动和社会保障"),
    ("孩子上幼儿园摇号", "公办幼儿园学位太少，孩子摇号没摇上，希望学校增加学位。", "教育文体"),
    ("健身房办卡后跑路", "健身房让会员充值预付卡后关门跑路，预付款无法退还，请市场监管处理。", "商贸旅游"),
    ("工地半夜施工噪音大", "附近工地半夜施工噪音很大，还有扬尘污染，居民无法入睡。", "环境保护"),
    ("医院专家号挂不上", "医院专家号很难挂，医生态度也不好，希望卫健部门改善就医。", "卫生计生"),
    ("公交车班次太少", "早高峰公交车要等半小时，车上太挤，希望公交公司增加班次。", "交通运输"),
]
CLEAR_CASES_AS_ROWS = [(f"{t}{d}", label) for t, d, label in CLEAR_CASES]


def _texts_labels() -> tuple[list[str], list[str]]:
    """Training texts (title + detail) and labels from the demo examples."""
    return [f"{t}{d}" for t, d, _ in DEMO_EXAMPLES], [label for _, _, label in DEMO_EXAMPLES]


@pytest.fixture(scope="module")
def model() -> CategoryModel:
    """A model fitted once on the demo examples."""
    texts, labels = _texts_labels()
    return CategoryModel().fit(texts, labels)


def test_demo_examples_cover_every_label() -> None:
    counts = {label: 0 for label in LABELS}
    for title, text, label in DEMO_EXAMPLES:
        assert title and text
        counts[label] += 1
    assert min(counts.values()) >= 30


def test_normalize_makes_raw_and_segmented_equal() -> None:
    raw = "A市文三路１２号，路灯坏了！！ABC小区  K3 区"
    segmented = "市 文三路 12 号 路灯 坏了 小区 K3 区"
    assert normalize(raw) == normalize(segmented) == "市文三路号路灯坏了小区区"
    assert normalize("") == "" and normalize(None) == ""
    assert normalize("_x000D_蒋村\r\n河道") == "蒋村河道"


def test_fit_predicts_clear_new_examples(model: CategoryModel) -> None:
    probs = model.predict_proba([f"{t}{d}" for t, d, _ in CLEAR_CASES])
    predicted = [max(p, key=p.__getitem__) for p in probs]
    assert predicted == [label for _, _, label in CLEAR_CASES]
    assert model.predict(["小区门口路灯坏了好几天"])[0][0] == "城乡建设"


def test_probabilities_are_a_distribution(model: CategoryModel) -> None:
    probs = model.predict_proba(["西溪路公交站台没有遮雨棚", "", "ABC 123"])
    for p in probs:
        assert set(p) == set(LABELS)
        assert math.isclose(sum(p.values()), 1.0, abs_tol=1e-9)
        assert all(0.0 <= v <= 1.0 for v in p.values())


def test_threshold_and_metrics(model: CategoryModel) -> None:
    assert 0.0 <= model.threshold <= 1.0
    m = model.metrics
    for key in ("macro_f1", "accuracy", "auto_rate", "auto_precision", "n_train", "trained_at"):
        assert key in m
    assert m["n_train"] == len(DEMO_EXAMPLES)
    assert 0.5 < m["macro_f1"] <= 1.0
    assert 0.0 <= m["auto_rate"] <= 1.0


def test_metrics_by_category_agree_with_the_whole(model: CategoryModel) -> None:
    by_label = model.metrics["by_label"]
    _, labels = _texts_labels()
    assert sorted(by_label) == sorted(set(labels))
    assert {k: v["n"] for k, v in by_label.items()} == {k: labels.count(k) for k in set(labels)}
    # macro-F1 is the mean of the categories' F1, and the automatic share is their weighted mean
    f1 = [v["f1"] for v in by_label.values()]
    assert sum(f1) / len(f1) == pytest.approx(model.metrics["macro_f1"], abs=1e-3)
    weighted = sum(v["auto_rate"] * v["n"] for v in by_label.values()) / len(labels)
    assert weighted == pytest.approx(model.metrics["auto_rate"], abs=1e-3)
    assert all(
        0.0 <= v[key] <= 1.0 for v in by_label.values() for key in ("precision", "recall", "auto_rate")
    )


def test_top_terms_come_from_the_text(model: CategoryModel) -> None:
    text = "小区门口路灯坏了好几天"
    terms = model.top_terms(text, "城乡建设", k=3)
    assert 1 <= len(terms) <= 3
    assert all(term in normalize(text) for term in terms)
    assert len(set(terms)) == len(terms)


def test_save_load_round_trip(model: CategoryModel, tmp_path: Path) -> None:
    path = model.save(tmp_path / "dispatch" / "category.joblib")
    loaded = CategoryModel.load(path)
    texts = [f"{t}{d}" for t, d, _ in CLEAR_CASES]
    assert loaded.predict_proba(texts) == model.predict_proba(texts)
    assert loaded.threshold == model.threshold and loaded.labels == model.labels
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["metrics"]["n_train"] == len(DEMO_EXAMPLES)
    text = "工地半夜施工噪音大"
    assert loaded.top_terms(text, "环境保护") == model.top_terms(text, "环境保护")


def test_saved_model_names_its_n_grams_without_the_vocabulary_dict(
    model: CategoryModel, tmp_path: Path
) -> None:
    vocabulary = dict(model._vectorizer.vocabulary_)
    path = model.save(tmp_path / "m.joblib")
    assert model._vectorizer.vocabulary_ == vocabulary  # saving leaves the live model whole
    state = joblib.load(path)
    assert state["format"] == 4 and state["_vectorizer"].vocabulary_ == {}
    assert state["_head_vectorizer"].vocabulary_ == {}
    loaded = CategoryModel.load(path).prepare()
    names = model._vectorizer.get_feature_names_out()
    assert [loaded._term(j) for j in range(len(names))] == list(names)
    assert loaded._feature_lengths().tolist() == [len(n) for n in names]
    for title, detail, _ in CLEAR_CASES:
        for label in model.labels:
            assert loaded.top_terms(f"{title}{detail}", label) == model.top_terms(f"{title}{detail}", label)


def test_a_model_without_coded_n_grams_keeps_its_vocabulary(model: CategoryModel, tmp_path: Path) -> None:
    uncoded = CategoryModel()
    uncoded.__dict__.update({k: v for k, v in model.__dict__.items() if k != "_memo"})
    uncoded.__dict__["_lookup"] = None  # as when a term is longer than 3 characters or outside the BMP
    uncoded.__dict__["_head_lookup"] = None
    loaded = CategoryModel.load(uncoded.save(tmp_path / "m.joblib")).prepare()
    assert loaded._vectorizer.vocabulary_ == model._vectorizer.vocabulary_
    texts = [f"{t}{d}" for t, d, _ in CLEAR_CASES]
    assert loaded.predict_proba(texts) == model.predict_proba(texts)
    assert loaded.top_terms("工地半夜施工噪音大", "环境保护") == model.top_terms(
        "工地半夜施工噪音大", "环境保护"
    )


def test_fast_scorer_matches_vocabulary_lookup(model: CategoryModel) -> None:
    texts = ["小区门口路灯坏了好几天，路灯一直不亮", "", "ABC 123", "工地半夜施工噪音大，噪音大"]
    slow = CategoryModel()
    slow.__dict__.update({k: v for k, v in model.__dict__.items() if k != "_memo"})
    slow.__dict__["_lookup"] = None  # no n-gram codes: look n-grams up in the vocabulary dict
    slow.__dict__["_head_lookup"] = None
    assert model.__dict__.get("_lookup") is not None and model.__dict__.get("_head_lookup") is not None
    for text in texts:
        fast_idx, fast_w = model._tfidf(text)
        slow_idx, slow_w = slow._tfidf(text)
        assert fast_idx.tolist() == slow_idx.tolist()
        assert fast_w.tolist() == slow_w.tolist()
    main = model._check()
    doc = normalize(texts[0])
    x = main.transform([doc])
    idx, w = model._tfidf(texts[0])
    body = idx < len(main.idf_)
    assert sorted(idx[body].tolist()) == sorted(x.indices.tolist())
    assert math.isclose(float(x[0, int(idx[0])]), float(w[0]), rel_tol=1e-5)
    # the opening characters' own block follows the main one, at its weight
    head = model._head_vectorizer
    assert head is not None and model.head_len == 20
    h = head.transform([doc[: model.head_len]])
    assert sorted((idx[~body] - len(main.idf_)).tolist()) == sorted(h.indices.tolist())
    first = int(idx[~body][0])
    assert math.isclose(
        float(w[~body][0]), model.head_weight * float(h[0, first - len(main.idf_)]), rel_tol=1e-5
    )


def test_four_gram_model_uses_vocabulary_lookup() -> None:
    texts, labels = _texts_labels()
    model = CategoryModel(ngram_range=(2, 4)).fit(texts, labels)
    assert model.__dict__.get("_lookup") is None
    assert model.predict(["小区门口路灯坏了好几天"])[0][0] == "城乡建设"


def test_evaluate_returns_sane_values(model: CategoryModel) -> None:
    result = evaluate(model, CLEAR_CASES_AS_ROWS)
    assert set(result) == {"n", "accuracy", "macro_f1", "auto_rate", "auto_precision", "ms_per_appeal"}
    assert result["n"] == len(CLEAR_CASES)
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0
    assert 0.0 <= result["auto_rate"] <= 1.0 and 0.0 <= result["auto_precision"] <= 1.0
    assert 0.0 < result["ms_per_appeal"] < 1000.0
    dict_rows = [{"title": t, "text": d, "label": label} for t, d, label in CLEAR_CASES]
    assert evaluate(model, dict_rows)["accuracy"] == 1.0


def test_auto_threshold_picks_lowest_threshold_reaching_target() -> None:
    probs = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6]
    correct = [True, True, True, False, True, False]
    assert auto_threshold(probs, correct, target=1.0) == 0.9
    assert auto_threshold(probs, correct, target=0.8) == 0.7
    assert auto_threshold(probs, [False] * 6, target=0.99) == 1.0
    assert auto_threshold([], [], target=0.99) == 1.0


def test_dedupe_rows_keeps_first_of_each_group() -> None:
    rows = [{"dup_group": "7", "id": "a"}, {"dup_group": "", "id": "b"}, {"dup_group": "7", "id": "c"}]
    assert [r["id"] for r in dedupe_rows(rows)] == ["a", "b"]


def test_train_from_csv(tmp_path: Path) -> None:
    path = tmp_path / "appeals.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["title", "text", "label", "dup_group"])
        for i, (title, text, label) in enumerate(DEMO_EXAMPLES):
            writer.writerow([title, text, label, ""])
            if i % 10 == 0:  # a re-post that must be dropped
                writer.writerow([title, text, label, f"g{i}"])
                writer.writerow([title, text, label, f"g{i}"])
    model = train_from_csv(path)
    assert model.metrics["n_train"] == len(DEMO_EXAMPLES) + len(DEMO_EXAMPLES[::10])
    assert model.predict(["医院专家号挂不上"])[0][0] == "卫生计生"


def test_unfitted_model_raises() -> None:
    with pytest.raises(RuntimeError):
        CategoryModel().predict_proba(["路灯坏了"])


def test_ensemble_members_stack_as_one_linear_scorer() -> None:
    texts, labels = _texts_labels()
    model = CategoryModel(members=("svm", "nbsvm", "cnb"))
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, lowercase=False)
    x = vectorizer.fit_transform([normalize(t) for t in texts])
    y = np.asarray(labels)
    classes = np.unique(y)
    coef, intercept = model._fit_members(x, y, classes)
    k = classes.size
    assert coef.shape == (x.shape[1], 3 * k) and intercept.shape == (3 * k,)
    scores = x @ coef + intercept
    svm = LinearSVC(C=model.C, random_state=model.random_state).fit(x, y)
    assert np.allclose(scores[:, :k], svm.decision_function(x))
    cnb = ComplementNB(alpha=model.cnb_alpha).fit(x, y)
    jll = x @ cnb.feature_log_prob_.T
    assert np.allclose(scores[:, 2 * k :], jll - jll.mean(axis=1, keepdims=True))
    # NB-SVM folds the log-count-ratio scaling into its weights: same scores as the SVM on scaled features
    present = (x > 0).astype(float)
    pos = y == classes[0]
    p = np.asarray(present[pos].sum(axis=0)).ravel() + 1.0
    q = np.asarray(present[~pos].sum(axis=0)).ravel() + 1.0
    r = np.log((p / p.sum()) / (q / q.sum()))
    scaled = x.multiply(r.astype(np.float32)).tocsr()
    nb = LinearSVC(C=model.nbsvm_C, random_state=model.random_state).fit(scaled, pos)
    assert np.allclose(scores[:, k], nb.decision_function(scaled), atol=1e-5)


def test_model_records_its_members(model: CategoryModel) -> None:
    assert model.metrics["members"] == ["svm", "nbsvm"]
    assert model._coef.shape[1] == 2 * len(LABELS)
    with pytest.raises(ValueError):
        CategoryModel(members=("svm", "bert")).fit(*_texts_labels())


def test_format_1_model_files_still_load(tmp_path: Path) -> None:
    texts, labels = _texts_labels()
    svm_only = CategoryModel(members=("svm",)).fit(texts, labels)
    # a file as the pre-ensemble code wrote it: format 1, no `members` and no ensemble parameters
    state = {
        k: v for k, v in svm_only.__dict__.items() if k not in {"members", "nbsvm_C", "cnb_alpha", "_memo"}
    }
    path = tmp_path / "v1.joblib"
    joblib.dump({"format": 1, "sklearn": "1.5.0", **state}, path)
    loaded = CategoryModel.load(path)
    assert loaded.members == ("svm",)
    probe = [f"{t}{d}" for t, d, _ in CLEAR_CASES]
    assert loaded.predict_proba(probe) == svm_only.predict_proba(probe)
    assert loaded.top_terms("工地半夜施工噪音大", "环境保护") == svm_only.top_terms(
        "工地半夜施工噪音大", "环境保护"
    )


def test_unknown_format_fails_with_a_clear_message(model: CategoryModel, tmp_path: Path) -> None:
    path = model.save(tmp_path / "m.joblib")
    state = joblib.load(path)
    state["format"] = 99
    joblib.dump(state, path)
    with pytest.raises(ValueError, match="模型文件格式"):
        CategoryModel.load(path)


def test_two_categories() -> None:
    texts, labels = _texts_labels()
    pairs = [(t, label) for t, label in zip(texts, labels, strict=True) if label in {"交通运输", "教育文体"}]
    model = CategoryModel().fit([t for t, _ in pairs], [label for _, label in pairs])
    assert model._coef.shape[1] == 2 * 2
    (best, p, _auto), *_ = model.predict(["公交车班次太少，等车半小时"])
    assert best == "交通运输" and 0.5 < p <= 1.0
    probs = model.predict_proba(["孩子上学摇号"])[0]
    assert max(probs, key=probs.__getitem__) == "教育文体"
    assert math.isclose(sum(probs.values()), 1.0)
    terms = model.top_terms("公交车班次太少", "交通运输", k=2)
    assert terms and all(term in "公交车班次太少" for term in terms)


def test_confidence_from_the_margin_keeps_ranking_and_sums_to_one() -> None:
    prob = np.array([[0.70, 0.20, 0.10], [0.40, 0.35, 0.25], [1.0, 0.0, 0.0]])
    z = np.log(np.maximum(prob, 1e-12))
    out = _with_confidence(prob, z, (2.0, -1.0))
    margin = np.array([np.log(0.70 / 0.20), np.log(0.40 / 0.35), np.log(1.0 / 1e-12)])
    c = 1.0 / (1.0 + np.exp(-(2.0 * margin - 1.0)))
    assert np.allclose(out.sum(axis=1), 1.0)
    assert out.argmax(axis=1).tolist() == prob.argmax(axis=1).tolist()
    assert math.isclose(out[0, 0], c[0]) and math.isclose(out[2, 0], c[2])
    assert math.isclose(out[0, 1] / out[0, 2], 2.0)  # the others keep their proportions
    # row 1: the re-estimated top (sigmoid(2*0.13-1) = 0.32) would fall below a runner-up: row kept as is
    assert out[1].tolist() == prob[1].tolist()
    assert _with_confidence(prob, z, None) is prob


def test_confidence_map_needs_both_outcomes() -> None:
    margin = np.array([0.1, 0.5, 1.0, 2.0, 3.0, 4.0])
    assert _fit_confidence(margin, np.ones(6, dtype=bool)) is None
    assert _fit_confidence(margin, np.zeros(6, dtype=bool)) is None
    fitted = _fit_confidence(margin, np.array([False, False, True, False, True, True]))
    assert fitted is not None and fitted[0] > 0


def test_auto_flag_follows_the_threshold(model: CategoryModel) -> None:
    texts = [f"{t}{d}" for t, d, _ in CLEAR_CASES] + ["路灯", "请处理一下"]
    for (label, p, auto), probs in zip(model.predict(texts), model.predict_proba(texts), strict=True):
        assert probs[label] == p == max(probs.values())
        assert auto == (p >= model.threshold)


def _reference_top_terms(model: CategoryModel, text: str, label: str, k: int) -> list[str]:
    """The plain-Python statement of `top_terms`: largest positive contribution first, words before chars."""
    features = model._check().get_feature_names_out()
    idx, w = model._tfidf(text)
    main = idx < len(features)  # explained in the main block's words; the opening's block repeats them
    idx, w = idx[main], w[main]
    logits = model._coef[idx].astype(np.float64) @ model._cal_coef.T
    j = model.labels.index(label)
    others = [c for c in range(logits.shape[1]) if c != j]
    contrib = w * (logits[:, j] - logits[:, others].mean(axis=1))
    terms = [str(features[i]) for i in idx]
    order = sorted(range(len(terms)), key=lambda i: (-contrib[i], -len(terms[i]), i))
    positive = [terms[i] for i in order if contrib[i] > 0]
    chosen: list[str] = []
    for term in [t for t in positive if len(t) > 1] + [t for t in positive if len(t) == 1]:
        if len(chosen) < k and not any(term in c or c in term for c in chosen):
            chosen.append(term)
    return chosen


def test_top_terms_match_the_plain_statement(model: CategoryModel) -> None:
    for title, detail, label in CLEAR_CASES:
        text = f"{title}{detail}"
        for category in (label, "城乡建设"):
            assert model.top_terms(text, category, k=4) == _reference_top_terms(model, text, category, 4)
