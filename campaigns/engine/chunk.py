"""The chunk loop: claim up to EMAIL_CHUNK_SIZE deliveries of one burst, send them
over ONE SMTP connection (reconnecting when it drops), record the outcomes in
groups, and give back what is left.

The chunk reports what happened in a `ChunkResult` and never changes the burst's
status: `campaigns.services.chunk_process` decides from the result whether the
burst pauses (a whole-burst fault), is finished, or gets a chunk at retry time.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings

from campaigns.engine.claiming import claim, release_leftovers
from campaigns.engine.classify import Outcome
from campaigns.engine.journal import Journal
from campaigns.engine.mime import PreparedBurst, context_for, encode_recipient, prepare_burst
from campaigns.engine.ratelimit import get_rate_limiter
from campaigns.engine.recording import (
    Recorder,
    connection_failure_count,
    connection_failures_reset,
    fail_claimed,
)
from campaigns.engine.recovery import journals_replay
from campaigns.engine.smtp import SmtpSession
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from campaigns.templating import TemplateProblem

logger = logging.getLogger(__name__)

# Why a chunk ended (`ChunkResult.stopped`), besides the status the burst was found
# in once it was no longer sending ("paused", "cancelled"):
DONE = "done"  # it handled all it claimed, or found nothing to claim
FAULT = "fault"  # a whole-burst fault, see `ChunkResult.fault`
DELETED = "deleted"  # the burst is gone

MEMBER_FIELDS = ("member__first_name", "member__middle_name", "member__last_name", "member__username")
WINDOW = 50  # messages built ahead, so each can announce the next one's envelope


@dataclass
class ChunkResult:
    claimed: int = 0
    processed: int = 0
    stopped: str = DONE
    # Why nothing more can be sent for the burst until someone acts (authentication or
    # sender refused, EMAIL_PAUSE_AFTER connection failures in a row); "" without a fault.
    fault: str = ""
    # Deliveries written, by the status written: a transient failure to retry is pending.
    outcomes: Counter[str] = field(default_factory=Counter)
    # When the transient failures written may be tried again.
    retry_at: list[datetime] = field(default_factory=list)
    # The chunk's claim token; after a fault it still holds its leftovers.
    token: str = ""


def chunk_send(*, burst_id: int, limit: int | None = None) -> ChunkResult:
    """Claim one chunk of a burst's deliveries and send them on one connection."""
    result = ChunkResult()
    burst = EmailBurst.objects.filter(pk=burst_id).first()
    if burst is None or burst.status != BurstStatus.SENDING:
        # Paused, cancelled or deleted since the task was queued: claim nothing.
        result.stopped = burst.status if burst else DELETED
        return result
    journals_replay()  # what a dead chunk here sent is recorded before anything is claimed
    token = uuid.uuid4().hex
    # Opened before the claim: a chunk that cannot keep a journal claims nothing.
    journal = Journal(settings.EMAIL_JOURNAL_DIR, burst_id=burst_id, token=token)
    try:
        result.claimed = claim(burst_id=burst_id, token=token, limit=limit or settings.EMAIL_CHUNK_SIZE)
    finally:
        if not result.claimed:
            journal.close(keep=False)
    if not result.claimed:
        return result
    recorder = Recorder(burst_id=burst_id, token=token, journal=journal)
    try:
        try:
            prepared = prepare_burst(burst)
        except TemplateProblem as exc:
            # Saved before a limit it now breaks (a `{% now %}` format too long):
            # retrying the chunk would fail the same way for ever.
            failed = fail_claimed(
                burst_id=burst_id, token=token, error=f"Could not compile the message: {exc}"
            )
            result.outcomes[DeliveryStatus.OTHER_ERROR] += failed
        else:
            _send_claimed(burst, prepared, recorder, result)
    finally:
        try:
            recorder.flush()
        except BaseException:
            # The database is away: the journal keeps what was sent for the recovery.
            journal.close(keep=True)
            raise
        journal.close(keep=False)
        # After a whole-burst fault the leftovers stay held (their lease runs) until
        # the service has paused the burst and calls `release_leftovers`: released
        # now, another worker's chunk would claim and try them while it still reads
        # "sending".
        if not result.fault:
            release_leftovers(burst_id=burst_id, token=token)
        result.token = token
        result.processed = recorder.done
        result.retry_at = recorder.retry_at
        result.outcomes.update(recorder.outcomes)
    return result


def _send_claimed(
    burst: EmailBurst, prepared: PreparedBurst, recorder: Recorder, result: ChunkResult
) -> None:
    rows = (
        Delivery.objects.filter(claim_token=recorder.token, status=DeliveryStatus.PENDING)
        .order_by("id")
        .values_list("id", "email", "attempts", "member_id", *MEMBER_FIELDS)
    )
    window_size = 2 if prepared.attachments else WINDOW  # big messages: keep memory small
    sender = _Sender(burst=burst, prepared=prepared, recorder=recorder, result=result)
    with SmtpSession() as smtp:
        sender.smtp = smtp
        window: list[tuple[int, int, str, bytes]] = []
        # A list, not an open cursor: statuses are written while the chunk goes
        # on, and the chunk is bounded by EMAIL_CHUNK_SIZE.
        for delivery_id, email, attempts, member_id, first, middle, last, username in list(rows):
            if prepared.attachment_error:
                recorder.add(
                    delivery_id,
                    attempts,
                    Outcome(DeliveryStatus.OTHER_ERROR, prepared.attachment_error, smtp_tried=False),
                )
                continue
            # No username: the LEFT JOIN found no member row (keys have no constraint).
            if member_id is None or not email or username is None:
                recorder.add(
                    delivery_id,
                    attempts,
                    Outcome(DeliveryStatus.SKIPPED, "Skipped: the member was deleted", smtp_tried=False),
                )
                continue
            member = {
                "first_name": first,
                "middle_name": middle,
                "last_name": last,
                "email": email,
                "username": username,
            }
            try:
                recipient = encode_recipient(email)
                context = context_for(
                    burst_subject=prepared.subject_source, member=member, member_id=member_id
                )
                to_name = " ".join(p for p in (first, last) if p)
                message = prepared.build(
                    delivery_id=delivery_id, to_email=recipient, to_name=to_name, context=context
                )
            except Exception as exc:  # one member's bad data never stops the burst
                # A TemplateProblem names the part and why: a template limit (size,
                # loop iterations, time) hit, or a failure, for this member's data.
                what = "render" if isinstance(exc, TemplateProblem) else "build"
                logger.warning(
                    "burst %s delivery %s: cannot %s message: %s", burst.pk, delivery_id, what, exc
                )
                recorder.add(
                    delivery_id,
                    attempts,
                    Outcome(
                        DeliveryStatus.OTHER_ERROR, f"Could not {what} the message: {exc}", smtp_tried=False
                    ),
                )
                continue
            window.append((delivery_id, attempts, recipient, message))
            if len(window) >= window_size:
                if sender.send_window(window):
                    return
                window = []
        if window:
            sender.send_window(window)


@dataclass
class _Sender:
    burst: EmailBurst
    prepared: PreparedBurst
    recorder: Recorder
    result: ChunkResult
    smtp: SmtpSession | None = None
    reset_streak: bool = False

    def send_window(self, window: list[tuple[int, int, str, bytes]]) -> bool:
        """Send built messages in order; True when the chunk must stop."""
        limiter = get_rate_limiter()
        recorder, burst = self.recorder, self.burst
        for index, (delivery_id, attempts, recipient, message) in enumerate(window):
            if recorder.due():
                recorder.flush()
                status = EmailBurst.objects.filter(pk=burst.pk).values_list("status", flat=True).first()
                if status != BurstStatus.SENDING:
                    self.result.stopped = status or DELETED
                    return True
            then = window[index + 1][2] if index + 1 < len(window) else None
            limiter.acquire()
            outcome = self.smtp.deliver(self.prepared.envelope_from, recipient, message, then=then)
            if outcome.burst_fault:
                recorder.flush()
                return self._fault(outcome.burst_fault)
            recorder.add(delivery_id, attempts, outcome)
            if outcome.status == DeliveryStatus.CONNECTION_ERROR:
                streak = connection_failure_count(burst.pk)
                if streak >= settings.EMAIL_PAUSE_AFTER:
                    recorder.flush()
                    return self._fault(f"{streak} consecutive connection failures; last: {outcome.error}")
                self.reset_streak = False
            elif not self.reset_streak:
                connection_failures_reset(burst.pk)
                self.reset_streak = True
        return False

    def _fault(self, reason: str) -> bool:
        self.result.stopped = FAULT
        self.result.fault = reason
        return True
