"""Use cases of the appeals domain (intake, the lifecycle, tracking, inboxes), re-exported from submodules."""

from xihu.appeals.service.access import read_scope
from xihu.appeals.service.analysis_reads import (
    open_completion_due_by_unit,
    rollup_facts,
    rollup_facts_page,
    titles_received,
)
from xihu.appeals.service.citizen import rate, reopen, track
from xihu.appeals.service.dispatch_queue import (
    RETURN_PREFIX,
    ReturnNote,
    returns_of,
    routing_decision,
    suggestions_for,
)
from xihu.appeals.service.dispatching import dispatch, return_to_dispatcher, transfer
from xihu.appeals.service.handling import (
    assist,
    batch,
    close,
    complete,
    decide_extension,
    merge,
    request_extension,
    sign,
    start,
    supervise,
)
from xihu.appeals.service.intake import auto_title, submit
from xihu.appeals.service.public_feed import list_public, public_updates
from xihu.appeals.service.reads import awaiting_by_street, awaiting_dispatch, photo, read, search
from xihu.appeals.service.reports import counts_by_state, dispatch_quality
from xihu.appeals.service.routing import DISPATCHER, route_queued, score_ahead
from xihu.appeals.service.sla_policies import delete_sla_policy, list_sla_policies, save_sla_policy

__all__ = [
    "DISPATCHER",
    "RETURN_PREFIX",
    "ReturnNote",
    "assist",
    "awaiting_by_street",
    "awaiting_dispatch",
    "auto_title",
    "batch",
    "close",
    "complete",
    "counts_by_state",
    "decide_extension",
    "delete_sla_policy",
    "dispatch",
    "dispatch_quality",
    "list_public",
    "list_sla_policies",
    "merge",
    "open_completion_due_by_unit",
    "photo",
    "public_updates",
    "rate",
    "read",
    "read_scope",
    "reopen",
    "request_extension",
    "return_to_dispatcher",
    "returns_of",
    "rollup_facts",
    "rollup_facts_page",
    "route_queued",
    "save_sla_policy",
    "score_ahead",
    "search",
    "sign",
    "start",
    "submit",
    "routing_decision",
    "suggestions_for",
    "supervise",
    "titles_received",
    "track",
    "transfer",
]
