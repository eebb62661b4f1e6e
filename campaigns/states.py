"""The burst state machine: which action is legal in which status, and the status
it leads to.

`BURST_TRANSITIONS` is the one table of legal moves. `campaigns.services.burst_transition`
is the one function that changes a burst's status, and it consults this table; the
admin's buttons and bulk actions are derived from `burst_actions_available`, and the
API's answers follow from the services.
"""

from __future__ import annotations

from enum import StrEnum

from campaigns.models import BurstStatus
from common.errors import IllegalState


class BurstAction(StrEnum):
    # What staff do, in the admin or through the API.
    SEND = "send"
    SCHEDULE = "schedule"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    RETRY = "retry"
    # What the system does.
    FINISH = "finish"  # the last delivery is done
    HOLD = "hold"  # a scheduled burst could not start at its time


STAFF_ACTIONS: tuple[BurstAction, ...] = (
    BurstAction.SEND,
    BurstAction.SCHEDULE,
    BurstAction.PAUSE,
    BurstAction.RESUME,
    BurstAction.CANCEL,
    BurstAction.RETRY,
)

_S, _A = BurstStatus, BurstAction

# (status, action) -> the status the burst then has. A pair not listed is illegal.
BURST_TRANSITIONS: dict[tuple[BurstStatus, BurstAction], BurstStatus] = {
    (_S.DRAFT, _A.SEND): _S.SENDING,
    (_S.DRAFT, _A.SCHEDULE): _S.SCHEDULED,
    (_S.SCHEDULED, _A.SEND): _S.SENDING,  # sent now, or started by the dispatcher at its time
    (_S.SCHEDULED, _A.SCHEDULE): _S.SCHEDULED,  # rescheduled
    (_S.SCHEDULED, _A.CANCEL): _S.CANCELLED,
    # It cannot start at its time (no recipients left, a template that no longer
    # compiles): paused with the reason, so that staff see why, fix it and resume,
    # instead of a burst that silently never goes.
    (_S.SCHEDULED, _A.HOLD): _S.PAUSED,
    (_S.SENDING, _A.PAUSE): _S.PAUSED,  # by staff, or for a whole-burst fault
    (_S.SENDING, _A.CANCEL): _S.CANCELLED,
    (_S.SENDING, _A.FINISH): _S.SENT,
    (_S.SENDING, _A.RETRY): _S.SENDING,
    (_S.PAUSED, _A.RESUME): _S.SENDING,
    (_S.PAUSED, _A.CANCEL): _S.CANCELLED,
    (_S.PAUSED, _A.RETRY): _S.PAUSED,  # the re-queued deliveries go once it is resumed
    # Failed deliveries of a finished burst re-queued: it is sending again, and
    # finishes again once they are done.
    (_S.SENT, _A.RETRY): _S.SENDING,
}

# How a refusal names what the action needs ("Only a paused burst can be resumed").
_REFUSAL = {
    _A.SEND: "can be sent",
    _A.SCHEDULE: "can be scheduled",
    _A.PAUSE: "can be paused",
    _A.RESUME: "can be resumed",
    _A.CANCEL: "can be cancelled",
    _A.RETRY: "has deliveries to retry",
    _A.FINISH: "can be finished",
    _A.HOLD: "can be held",
}


def statuses_allowing(action: BurstAction) -> list[BurstStatus]:
    """The statuses in which `action` is legal, in the order of BurstStatus."""
    return [status for status in BurstStatus if (status, action) in BURST_TRANSITIONS]


def burst_actions_available(status: str) -> frozenset[BurstAction]:
    """The staff actions legal in `status`: what the admin offers."""
    return frozenset(action for action in STAFF_ACTIONS if (status, action) in BURST_TRANSITIONS)


def burst_action_target(*, status: str, action: BurstAction) -> BurstStatus:
    """The status `action` leads to from `status`; IllegalState when it is not legal."""
    try:
        return BURST_TRANSITIONS[(status, action)]
    except KeyError:
        raise IllegalState(_refusal(status, action)) from None


def _refusal(status: str, action: BurstAction) -> str:
    allowed = [str(s) for s in statuses_allowing(action)]
    who = " or ".join(filter(None, [", ".join(allowed[:-1]), allowed[-1]]))
    return f"Only a {who} burst {_REFUSAL[action]}; this one is {status}."
