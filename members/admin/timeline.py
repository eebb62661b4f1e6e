"""A member's delivery timeline: their latest deliveries, newest first, each with the
tries that led to its status ("14:02:10 451 4.2.2 Mailbox full — will retry", then
"14:03:12 Sent"), then the bounces and complaints reported about it later. Read in
three queries however long it is (campaigns.selectors)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.urls import reverse
from django.utils import timezone

from campaigns.models import Delivery, DeliveryStatus
from campaigns.selectors import member_deliveries
from campaigns.vocabulary import DELIVERY_STATUS_VARIANTS, STATUS_LABELS

TIMELINE_LENGTH = 50


def clock(moment: datetime) -> str:
    """A try's time in the site's zone, to the second: "14:05:30" today, else with its date."""
    local = timezone.localtime(moment)
    return f"{local:%H:%M:%S}" if local.date() == timezone.localdate() else f"{local:%Y-%m-%d %H:%M:%S}"


@dataclass(frozen=True)
class Step:
    """One line under a delivery: a try, the final "Sent", or the retry to come."""

    at: str
    text: str
    outcome: str
    will_retry: bool = False


@dataclass(frozen=True)
class Entry:
    delivery: Delivery
    label: str
    variant: str
    steps: list[Step]


def delivery_steps(delivery: Delivery) -> list[Step]:
    """The tries of ``delivery`` worth a line each; none when its own row says it all
    (sent at once, skipped, or refused on its only try)."""
    tries = list(delivery.attempt_log.all())  # prefetched
    finished = delivery.status not in {DeliveryStatus.SENT, DeliveryStatus.PENDING}
    if not tries or (len(tries) == 1 and finished):
        return []
    steps = [
        Step(
            at=clock(attempt.attempted_at),
            text=attempt.reply or STATUS_LABELS[attempt.outcome],
            outcome=attempt.outcome,
            will_retry=attempt.will_retry,
        )
        for attempt in tries
    ]
    if delivery.status == DeliveryStatus.SENT and delivery.sent_at:
        steps.append(Step(at=clock(delivery.sent_at), text="Sent", outcome=DeliveryStatus.SENT))
    elif delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at:
        steps.append(
            Step(at=clock(delivery.next_attempt_at), text="Next try", outcome=DeliveryStatus.PENDING)
        )
    return steps


def event_steps(delivery: Delivery) -> list[Step]:
    """A line per bounce or complaint reported about ``delivery`` after sending."""
    return [
        Step(
            at=clock(event.occurred_at or event.received_at),
            text=f"{event.get_kind_display()}: {event.diagnostic}"
            if event.diagnostic
            else event.get_kind_display(),
            outcome=event.kind,
        )
        for event in delivery.events.all()  # prefetched
    ]


def timeline_context(member_id: int) -> dict[str, Any]:
    """What the member page's templates show of the member's deliveries."""
    # One more than shown tells whether there are more.
    deliveries = member_deliveries(member_id=member_id, limit=TIMELINE_LENGTH + 1)
    entries = [
        Entry(
            delivery=delivery,
            label=STATUS_LABELS[delivery.status],
            variant=DELIVERY_STATUS_VARIANTS[delivery.status],
            steps=delivery_steps(delivery) + event_steps(delivery),
        )
        for delivery in deliveries[:TIMELINE_LENGTH]
    ]
    return {
        "timeline": entries,
        "timeline_more": len(deliveries) > TIMELINE_LENGTH,
        "timeline_all_url": reverse("admin:campaigns_delivery_changelist")
        + f"?member__id__exact={member_id}",
    }
