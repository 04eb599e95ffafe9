"""The one transition table of the appeal lifecycle."""

from __future__ import annotations

from xihu.appeals.enums import Action, State
from xihu.core.errors import Conflict

S, A = State, Action

ALLOWED: dict[tuple[State, Action], State] = {
    (S.submitted, A.dispatch): S.dispatched,
    (S.submitted, A.merge): S.merged,
    (S.submitted, A.supervise): S.submitted,
    (S.dispatched, A.sign): S.signed,
    (S.dispatched, A.return_): S.submitted,
    (S.dispatched, A.transfer): S.dispatched,
    (S.dispatched, A.merge): S.merged,
    (S.dispatched, A.supervise): S.dispatched,
    (S.signed, A.start): S.handling,
    (S.signed, A.return_): S.submitted,
    (S.signed, A.transfer): S.dispatched,
    (S.signed, A.assist): S.signed,
    (S.signed, A.request_extension): S.signed,
    (S.signed, A.decide_extension): S.signed,
    (S.signed, A.supervise): S.signed,
    (S.handling, A.transfer): S.dispatched,
    (S.handling, A.assist): S.handling,
    (S.handling, A.request_extension): S.handling,
    (S.handling, A.decide_extension): S.handling,
    (S.handling, A.supervise): S.handling,
    (S.handling, A.complete): S.completed,
    (S.completed, A.rate): S.rated,
    (S.completed, A.close): S.closed,
    (S.rated, A.reopen): S.dispatched,
    (S.rated, A.close): S.closed,
}


def next_state(state: State, action: Action) -> State:
    """The state an action leads to, or a 409 Conflict naming what is allowed."""
    try:
        return ALLOWED[(state, action)]
    except KeyError:
        allowed = "、".join(a.label for (s, a) in ALLOWED if s == state) or "无"
        raise Conflict(
            f"当前状态「{state.label}」不能执行「{action.label}」（可执行：{allowed}）",
            english=f"action {action.value} is not allowed in state {state.value}",
            detail={"state": state.value, "action": action.value},
        ) from None


def allowed_actions(state: State) -> list[Action]:
    """Actions the table allows from a state."""
    return [a for (s, a) in ALLOWED if s == state]
