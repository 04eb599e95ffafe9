"""Quality guard of model activation: what makes a candidate version worse than the one dispatching now.

A version's figures are cross-validated on its own training rows. A retrain on contradictory corrections
(one kind of appeal labelled two ways) keeps its accuracy but loses its confidence: the demo once fell from
79 % to 4 % of appeals dispatched automatically. Such a version must not go live by a slip of the mouse, so
activating it asks the admin to confirm, naming what dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["AUTO_RATE_DROP", "MACRO_F1_DROP", "PRECISION_SHORTFALL", "concerns"]

# How far a figure may fall before activation needs a confirmation. Retraining the same rows gives the same
# figures (training is deterministic), and a few hundred corrections moved the demo's by well under these.
MACRO_F1_DROP = 0.02
AUTO_RATE_DROP = 0.10
# auto-dispatch precision rests on few wrong answers: half a point under the target is noise, more is not
PRECISION_SHORTFALL = 0.005


def _figure(metrics: Mapping[str, object] | None, key: str) -> float | None:
    value = (metrics or {}).get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def concerns(candidate: Mapping[str, object], current: Mapping[str, object] | None) -> list[str]:
    """In Chinese, why the candidate is worse than the active version (or short of its precision target).

    Empty when nothing dropped beyond the allowances above; a figure missing on either side is not compared.
    """
    found: list[str] = []
    precision = _figure(candidate, "auto_precision")
    target = _figure(candidate, "target_precision")
    rate = _figure(candidate, "auto_rate")
    if precision is not None and target is not None and rate and precision < target - PRECISION_SHORTFALL:
        found.append(f"自动派单准确率 {_pct(precision)}，低于目标 {_pct(target)}")
    if current is None:
        return found
    for key, name, allowed in (
        ("auto_rate", "自动派单率", AUTO_RATE_DROP),
        ("macro_f1", "宏平均F1", MACRO_F1_DROP),
    ):
        new, old = _figure(candidate, key), _figure(current, key)
        if new is not None and old is not None and new < old - allowed:
            found.append(f"{name}从 {_pct(old)} 降到 {_pct(new)}")
    return found
