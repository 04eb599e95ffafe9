"""Progress by compound annual growth (OpenSDG / Statistics Canada), worked by hand."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from xihu.indicators.enums import ProgressStatus
from xihu.indicators.service import progress


@dataclass
class Ind:
    direction: str = "higher"
    baseline_value: float | None = 100.0
    baseline_year: int | None = 2020
    target_value: float | None = 161.051
    target_year: int | None = 2025


@dataclass
class Obs:
    period: str
    value: float


def test_on_track_growth_is_substantial_with_ratio_one_and_forecast_on_target() -> None:
    # 100 -> 121 in two years is 10 % a year; 100 -> 161.051 in five years needs 10 % a year
    status, detail = progress(Ind(), [Obs("2021", 110), Obs("2022", 121)])
    assert status == ProgressStatus.substantial
    assert detail.observed_cagr == pytest.approx(0.10)
    assert detail.required_cagr == pytest.approx(0.10)
    assert detail.ratio == pytest.approx(1.0)
    assert detail.forecast == pytest.approx(161.051)  # 121 * 1.1^3
    assert (detail.latest_value, detail.latest_period) == (121, "2022")


def test_half_the_needed_growth_is_moderate_and_a_little_is_limited() -> None:
    # 10 % a year needed; 100 -> 110.25 in two years is 5 % a year: ratio 0.5
    status, detail = progress(Ind(), [Obs("2022", 110.25)])
    assert status == ProgressStatus.moderate
    assert detail.ratio == pytest.approx(0.5)
    # 100 -> 102.01 is 1 % a year: ratio 0.1
    status, detail = progress(Ind(), [Obs("2022", 102.01)])
    assert status == ProgressStatus.limited
    assert detail.ratio == pytest.approx(0.1)


def test_target_already_met_is_achieved() -> None:
    status, _ = progress(Ind(), [Obs("2023", 170)])
    assert status == ProgressStatus.achieved


def test_falling_value_is_deterioration() -> None:
    # 100 -> 81 in two years is -10 % a year
    status, detail = progress(Ind(), [Obs("2022", 81)])
    assert status == ProgressStatus.deterioration
    assert detail.observed_cagr == pytest.approx(-0.10)
    assert detail.ratio is not None and detail.ratio < 0


def test_lower_is_better_inverts_the_ratios() -> None:
    # a ratio 2.0 in 2020 that should fall to 2.0/1.1^5 = 1.2418 by 2025; 2.0 -> 2.0/1.21 = 1.6529 by 2022
    ind = Ind(direction="lower", baseline_value=2.0, target_value=2.0 / 1.1**5)
    status, detail = progress(ind, [Obs("2022", 2.0 / 1.21)])
    assert status == ProgressStatus.substantial
    assert detail.observed_cagr == pytest.approx(0.10)
    assert detail.required_cagr == pytest.approx(0.10)
    assert detail.forecast == pytest.approx(2.0 / 1.1**5)
    # below the target is achieved; rising is deterioration
    assert progress(ind, [Obs("2022", 1.2)])[0] == ProgressStatus.achieved
    assert progress(ind, [Obs("2022", 2.2)])[0] == ProgressStatus.deterioration


def test_baseline_that_met_target_but_latest_does_not_is_deterioration() -> None:
    ind = Ind(direction="lower", baseline_value=1.5, target_value=1.7)
    assert progress(ind, [Obs("2022", 1.8)])[0] == ProgressStatus.deterioration


@pytest.mark.parametrize(
    ("ind", "obs"),
    [
        (Ind(), []),
        (Ind(baseline_value=None), [Obs("2022", 121)]),
        (Ind(baseline_year=None), [Obs("2022", 121)]),
        (Ind(target_value=None), [Obs("2022", 121)]),
        (Ind(), [Obs("2020", 101)]),  # no time has passed since the baseline
    ],
)
def test_missing_data_is_no_data(ind: Ind, obs: list[Obs]) -> None:
    assert progress(ind, obs)[0] == ProgressStatus.no_data


def test_the_latest_period_is_used() -> None:
    status, detail = progress(Ind(), [Obs("2022", 121), Obs("2021", 50)])
    assert detail.latest_period == "2022"
    assert status == ProgressStatus.substantial
