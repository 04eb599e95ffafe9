"""Appeal states, actions, channels and ratings with their Chinese labels and colours."""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    """Where an appeal is in its lifecycle."""

    submitted = "submitted"
    dispatched = "dispatched"
    signed = "signed"
    handling = "handling"
    completed = "completed"
    rated = "rated"
    closed = "closed"
    merged = "merged"

    @property
    def label(self) -> str:
        """Chinese name."""
        return STATE_LABELS[self][0]

    @property
    def colour(self) -> str:
        """Colour used for badges."""
        return STATE_LABELS[self][1]


STATE_LABELS = {
    State.submitted: ("已受理待派单", "#8c8c8c"),
    State.dispatched: ("已派单待签收", "#1677ff"),
    State.signed: ("已签收", "#13c2c2"),
    State.handling: ("处置中", "#fa8c16"),
    State.completed: ("已办结待评价", "#52c41a"),
    State.rated: ("已评价", "#389e0d"),
    State.closed: ("已归档", "#595959"),
    State.merged: ("已合并", "#bfbfbf"),
}

OPEN_STATES = frozenset({State.submitted, State.dispatched, State.signed, State.handling})


class Action(enum.StrEnum):
    """Everything that can happen to an appeal."""

    submit = "submit"
    dispatch = "dispatch"
    sign = "sign"
    start = "start"
    return_ = "return"
    transfer = "transfer"
    assist = "assist"
    request_extension = "request_extension"
    decide_extension = "decide_extension"
    supervise = "supervise"
    complete = "complete"
    rate = "rate"
    reopen = "reopen"
    close = "close"
    merge = "merge"

    @property
    def label(self) -> str:
        """Chinese name as shown on the timeline."""
        return ACTION_LABELS[self]


ACTION_LABELS = {
    Action.submit: "受理",
    Action.dispatch: "派单",
    Action.sign: "签收",
    Action.start: "开始处置",
    Action.return_: "退回",
    Action.transfer: "转办",
    Action.assist: "协办意见",
    Action.request_extension: "申请延期",
    Action.decide_extension: "延期审批",
    Action.supervise: "督办",
    Action.complete: "办结",
    Action.rate: "评价",
    Action.reopen: "重办",
    Action.close: "归档",
    Action.merge: "合并",
}


class Channel(enum.StrEnum):
    """How an appeal reached us."""

    web = "web"
    qr = "qr"
    hotline = "hotline"
    api = "api"
    import_12345 = "import_12345"
    open311 = "open311"

    @property
    def label(self) -> str:
        """Chinese name."""
        return {
            "web": "网页",
            "qr": "西湖码扫码",
            "hotline": "热线电话",
            "api": "接口",
            "import_12345": "12345 导入",
            "open311": "Open311",
        }[self.value]


class Priority(enum.StrEnum):
    """How urgent an appeal is (drives the SLA policy)."""

    urgent = "urgent"
    normal = "normal"
    complex = "complex"

    @property
    def label(self) -> str:
        """Chinese name."""
        return {"urgent": "紧急", "normal": "一般", "complex": "疑难"}[self.value]


class Rating(enum.StrEnum):
    """The citizen's verdict on the result."""

    satisfied = "satisfied"
    basic = "basic"
    unsatisfied = "unsatisfied"

    @property
    def label(self) -> str:
        """Chinese name."""
        return {"satisfied": "满意", "basic": "基本满意", "unsatisfied": "不满意"}[self.value]


class DeadlineKind(enum.StrEnum):
    """The three clocks of the seeds: 1 minute, 30 minutes, 24 hours."""

    sign = "sign"
    handle = "handle"
    complete = "complete"

    @property
    def label(self) -> str:
        """Chinese name."""
        return {"sign": "签收", "handle": "流转处置", "complete": "办结反馈"}[self.value]


class UnitRole(enum.StrEnum):
    """A unit's part in handling an appeal."""

    lead = "lead"
    co = "co"
