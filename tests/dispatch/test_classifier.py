"""Tests of the dispatch category classifier on the project's own illustrative appeals (no shared data)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from xihu.dispatch.classifier import (
    LABELS,
    CategoryModel,
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


def test_fast_scorer_matches_vocabulary_lookup(model: CategoryModel) -> None:
    texts = ["小区门口路灯坏了好几天，路灯一直不亮", "", "ABC 123", "工地半夜施工噪音大，噪音大"]
    slow = CategoryModel()
    slow.__dict__.update({k: v for k, v in model.__dict__.items() if k != "_memo"})
    slow.__dict__["_lookup"] = None  # no n-gram codes: look n-grams up in the vocabulary dict
    assert model.__dict__.get("_lookup") is not None
    for text in texts:
        fast_idx, fast_w = model._tfidf(text)
        slow_idx, slow_w = slow._tfidf(text)
        assert fast_idx.tolist() == slow_idx.tolist()
        assert fast_w.tolist() == slow_w.tolist()
    x = model._check().transform([normalize(texts[0])])
    idx, w = model._tfidf(texts[0])
    assert sorted(idx.tolist()) == sorted(x.indices.tolist())
    assert math.isclose(float(x[0, int(idx[0])]), float(w[0]), rel_tol=1e-5)


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
