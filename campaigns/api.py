"""Email-burst endpoints: thin handlers over campaigns.services."""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import File, Query, Router, Status
from ninja.errors import AuthorizationError
from ninja.files import UploadedFile

from campaigns import selectors, services
from campaigns.models import EmailBurst
from campaigns.schemas import (
    AttachmentOut,
    BurstIn,
    BurstOut,
    BurstPage,
    BurstPatch,
    BurstTestIn,
    BurstTestOut,
    DeliveryPage,
    DeliveryQuery,
    MailEventPage,
    MailEventQuery,
    MailServerError,
    PreflightOut,
    PreviewOut,
    PreviewQuery,
    RetryIn,
    RetryOut,
    ScheduleIn,
    StatsOut,
    SuppressionIn,
    SuppressionOut,
    SuppressionPage,
    SuppressionQuery,
)
from common.api import (
    OBJECT_ERRORS,
    ErrorOut,
    PageQuery,
    StaffAuth,
    attachment_body_limit,
    paginate,
    responses,
    sender_auth,
    staff_auth,
)
from common.errors import Forbidden, InvalidInput
from members.models import Member


class BurstChangeAuth(StaffAuth):
    """Staff, and on a scheduled burst also `campaigns.send_emailburst`: changing,
    deleting or adding to what is set to go is as good as sending it.

    Decided in the auth step, so that a caller without the permission gets 403 before
    the body is read or validated; the service checks again under the row lock."""

    def check(self, request: HttpRequest, user: Member) -> None:
        burst_id = request.resolver_match.kwargs.get("id") if request.resolver_match else None
        if burst_id is None:
            return
        try:
            services.burst_change_check(burst_id=burst_id, actor=user)
        except Forbidden as exc:
            raise AuthorizationError(message=exc.message) from None


burst_change_auth = BurstChangeAuth()
router = Router(auth=staff_auth, tags=["email bursts"])

STATE_ERRORS = {**OBJECT_ERRORS, 409: ErrorOut}


def _bursts():
    return selectors.bursts_with_counts(EmailBurst.objects.order_by("-created_at", "-id"))


def _burst(burst_id: int) -> EmailBurst:
    burst = get_object_or_404(_bursts(), pk=burst_id)
    selectors.recipient_counts_fill([burst])
    selectors.audience_ids_fill([burst])
    return burst


def _exists(burst_id: int) -> EmailBurst:
    """The burst (its id, status and counters) or 404."""
    return get_object_or_404(EmailBurst.objects.only("pk", "status", *selectors.COUNTER_FIELDS), pk=burst_id)


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    """API names to service names; choosing one audience clears the other."""
    if "recipients" in data:
        data["recipient_ids"] = data.pop("recipients")
    if any(data.get(f) for f in ("recipient_ids", "lists", "segments", "exclude_lists", "exclude_segments")):
        data.setdefault("all_members", False)
    if data.get("all_members"):
        for field in ("recipient_ids", "lists", "segments", "exclude_lists", "exclude_segments"):
            data.setdefault(field, [])
    return data


@router.get(
    "/email-burst/",
    response=responses({200: BurstPage}),
    summary="List email bursts",
    operation_id="email_burst_list",
)
def list_bursts(request: HttpRequest, page: Query[PageQuery]):
    """Staff only. Newest first, paginated with `limit` (at most 500) and `offset`, or by
    following `next` (a cursor link)."""
    answer = paginate(_bursts(), page, request)
    selectors.recipient_counts_fill(answer["items"])
    selectors.audience_ids_fill(answer["items"])
    return answer


@router.post(
    "/email-burst/",
    response=responses({201: BurstOut}),
    summary="Create an email burst",
    operation_id="email_burst_create",
)
def create_burst(request: HttpRequest, payload: BurstIn):
    """Staff only. Answers 201 with the draft. Unknown recipient ids, a template that
    does not compile or a bad address are a 422 naming the field."""
    burst = services.burst_create(created_by=request.auth, **_fields(payload.model_dump()))
    return Status(201, _burst(burst.pk))


@router.get(
    "/email-burst/{int:id}/",
    response=responses({200: BurstOut}, errors=OBJECT_ERRORS),
    summary="Get an email burst",
    operation_id="email_burst_get",
)
def get_burst(request: HttpRequest, id: int):
    """Staff only."""
    return _burst(id)


@router.put(
    "/email-burst/{int:id}/",
    auth=burst_change_auth,
    response=responses({200: BurstOut}, errors=STATE_ERRORS),
    summary="Replace an email burst",
    operation_id="email_burst_replace",
)
def replace_burst(request: HttpRequest, id: int, payload: BurstIn):
    """Staff only; a scheduled burst also needs campaigns.send_emailburst (else 403).
    Omitted optional fields are reset to their defaults. 409 unless the burst is a
    draft or scheduled."""
    _exists(id)
    services.burst_update(burst_id=id, actor=request.auth, **_fields(payload.model_dump()))
    return _burst(id)


@router.patch(
    "/email-burst/{int:id}/",
    auth=burst_change_auth,
    response=responses({200: BurstOut}, errors=STATE_ERRORS),
    summary="Update an email burst",
    operation_id="email_burst_update",
)
def update_burst(request: HttpRequest, id: int, payload: BurstPatch):
    """Staff only; a scheduled burst also needs campaigns.send_emailburst (else 403).
    Changes only the fields sent. 409 unless the burst is a draft or scheduled."""
    _exists(id)
    services.burst_update(burst_id=id, actor=request.auth, **_fields(payload.model_dump(exclude_unset=True)))
    return _burst(id)


@router.delete(
    "/email-burst/{int:id}/",
    auth=burst_change_auth,
    response=responses({204: None}, errors=STATE_ERRORS),
    summary="Delete an email burst",
    operation_id="email_burst_delete",
)
def delete_burst(request: HttpRequest, id: int):
    """Staff only; a scheduled burst also needs campaigns.send_emailburst (else 403).
    409 unless the burst is a draft or scheduled."""
    _exists(id)
    services.burst_delete(burst_id=id, actor=request.auth)
    return Status(204, None)


# --- state changes (campaigns.send_emailburst) ----------------------------------------------


def _state_change(burst_id: int, action) -> Status:
    _exists(burst_id)
    action(burst_id=burst_id)
    return Status(202, _burst(burst_id))


@router.post(
    "/email-burst/{int:id}/send/",
    auth=sender_auth,
    response=responses({202: BurstOut}, errors=STATE_ERRORS),
    summary="Send an email burst now",
    description="Needs campaigns.send_emailburst. Starts sending: 202 with the burst (status "
    "`sending`); 409 unless it is a draft or scheduled; 422 when it has no recipients.",
    operation_id="email_burst_send",
)
def send_burst(request: HttpRequest, id: int):
    return _state_change(id, services.burst_send)


@router.post(
    "/email-burst/{int:id}/pause/",
    auth=sender_auth,
    response=responses({202: BurstOut}, errors=STATE_ERRORS),
    summary="Pause a sending burst",
    description="Needs campaigns.send_emailburst. 202, or 409 unless the burst is sending.",
    operation_id="email_burst_pause",
)
def pause_burst(request: HttpRequest, id: int):
    return _state_change(id, services.burst_pause)


@router.post(
    "/email-burst/{int:id}/resume/",
    auth=sender_auth,
    response=responses({202: BurstOut}, errors=STATE_ERRORS),
    summary="Resume a paused burst",
    description="Needs campaigns.send_emailburst. Mails only those not yet done. 202, or 409 "
    "unless the burst is paused.",
    operation_id="email_burst_resume",
)
def resume_burst(request: HttpRequest, id: int):
    return _state_change(id, services.burst_resume)


@router.post(
    "/email-burst/{int:id}/cancel/",
    auth=sender_auth,
    response=responses({202: BurstOut}, errors=STATE_ERRORS),
    summary="Cancel a burst",
    description="Needs campaigns.send_emailburst. Remaining deliveries become `skipped`. 202, or 409 "
    "unless the burst is scheduled, sending or paused.",
    operation_id="email_burst_cancel",
)
def cancel_burst(request: HttpRequest, id: int):
    return _state_change(id, services.burst_cancel)


@router.post(
    "/email-burst/{int:id}/schedule/",
    auth=sender_auth,
    response=responses({202: BurstOut}, errors=STATE_ERRORS),
    summary="Schedule an email burst",
    operation_id="email_burst_schedule",
)
def schedule_burst(request: HttpRequest, id: int, payload: ScheduleIn):
    """Needs campaigns.send_emailburst. `send_at` is ISO 8601 with a time zone, in the
    future and at most 5 years ahead (else 422). A scheduled burst may be rescheduled.
    409 unless draft or scheduled."""
    _exists(id)
    services.burst_schedule(burst_id=id, send_at=payload.send_at)
    return Status(202, _burst(id))


@router.post(
    "/email-burst/{int:id}/retry/",
    auth=sender_auth,
    response=responses({202: RetryOut}, errors=STATE_ERRORS),
    summary="Retry failed deliveries",
    operation_id="email_burst_retry",
)
def retry_burst(request: HttpRequest, id: int, payload: RetryIn = None):  # type: ignore[assignment]
    """Needs campaigns.send_emailburst. Re-queues the deliveries in the given statuses
    (default `connection_error` and `failed`; `not_found` is a 422). 409 unless the
    burst is sending, paused or sent."""
    _exists(id)
    payload = payload or RetryIn()
    count = services.burst_retry(burst_id=id, statuses=[str(s) for s in payload.statuses])
    return Status(202, {"email_burst_id": id, "requeued": count})


# --- figures ---------------------------------------------------------------------------------


@router.get(
    "/email-burst/{int:id}/stats/",
    response=responses({200: StatsOut}, errors=OBJECT_ERRORS),
    summary="Burst statistics",
    operation_id="email_burst_stats",
)
def burst_stats(request: HttpRequest, id: int):
    """Staff only. Delivery counts by status, the success rate, and how many deliveries
    wait for a retry and until when: one query."""
    return selectors.burst_stats(burst_id=id).as_dict()


@router.get(
    "/email-burst/{int:id}/deliveries/",
    response=responses({200: DeliveryPage}, errors=OBJECT_ERRORS),
    summary="List a burst's deliveries",
    operation_id="email_burst_deliveries",
)
def burst_deliveries(request: HttpRequest, id: int, query: Query[DeliveryQuery]):
    """Staff only. Ordered by id, filterable by `status`, paginated."""
    burst = _exists(id)
    # The burst's counters know how many there are of each status.
    count = burst.counts[query.status] if query.status else burst.delivery_total
    return paginate(
        selectors.burst_deliveries(burst_id=id, status=query.status or ""), query, request, count=count
    )


@router.post(
    "/email-burst/{int:id}/attachments/",
    auth=BurstChangeAuth(body_limit=attachment_body_limit),
    response=responses({201: AttachmentOut}, errors=STATE_ERRORS),
    summary="Upload an attachment",
    operation_id="email_burst_attachment_add",
)
def add_attachment(request: HttpRequest, id: int, file: File[UploadedFile]):
    """Staff only; a scheduled burst also needs campaigns.send_emailburst (else 403).
    Multipart upload (field `file`). 413 for a file above ATTACHMENT_MAX_SIZE or when
    the burst's attachments would total more than ATTACHMENT_MAX_TOTAL; 422 beyond
    ATTACHMENT_MAX_COUNT files; 409 unless the burst is a draft or scheduled."""
    _exists(id)
    return Status(201, services.attachment_add(burst_id=id, uploaded_file=file, actor=request.auth))


# --- before sending: test sends, preview, pre-flight -------------------------------------------


@router.post(
    "/email-burst/{int:id}/test/",
    response=responses({202: BurstTestOut, 503: MailServerError}, errors=OBJECT_ERRORS),
    summary="Send a test of an email burst",
    operation_id="email_burst_test",
)
def test_burst(request: HttpRequest, id: int, payload: BurstTestIn):
    """Staff only. Sends the burst, rendered for `member` (default: you), to 1-10 addresses:
    subject prefixed `[TEST] `, a new Message-ID each time, an unsubscribe link that only
    says it was a test. The burst's deliveries and figures are not touched. 202 with the
    addresses the mail server accepted and those it refused; 422 for a bad address, an
    unknown member, a template that does not render, or when it refused every address;
    503 when the mail server cannot be used."""
    _exists(id)
    try:
        report = services.burst_send_test(
            burst_id=id, emails=payload.emails, member_id=payload.member, actor=request.auth
        )
    except services.MailServerUnavailable as exc:
        return Status(503, {"status": "error", "message": exc.message})
    refused = [{"email": email, "reason": reason} for email, reason in report.refused.items()]
    return Status(202, {"sent_to": report.sent_to, "refused": refused, "member": report.rendered_for.pk})


@router.get(
    "/email-burst/{int:id}/preview/",
    response=responses({200: PreviewOut}, errors=OBJECT_ERRORS),
    summary="Preview an email burst",
    operation_id="email_burst_preview",
)
def preview_burst(request: HttpRequest, id: int, query: Query[PreviewQuery]):
    """Staff only. The subject, text part and HTML part (null without an HTML body) as
    `member` would get them; without `member`, for the first member the burst would mail,
    as the admin's preview shows. 422 for an unknown member or a template that does not
    render."""
    burst = get_object_or_404(EmailBurst.objects.only("pk", "all_members"), pk=id)
    if query.member is None:
        first = selectors.preview_members(burst=burst, limit=1)
        member_id = first[0].pk if first else None
    elif selectors.preview_member(member_id=query.member) is None:
        raise InvalidInput(f"member: there is no member with id {query.member}", field="member")
    else:
        member_id = query.member
    rendered = selectors.burst_preview(burst_id=id, member_id=member_id)
    # Template output is a SafeString; in JSON it is plain text like any other.
    return {
        "subject": str.__str__(rendered.subject),
        "text": str.__str__(rendered.text),
        "html": None if rendered.html is None else str.__str__(rendered.html),
    }


@router.get(
    "/email-burst/{int:id}/preflight/",
    response=responses({200: PreflightOut}, errors=OBJECT_ERRORS),
    summary="Pre-flight check of an email burst",
    operation_id="email_burst_preflight",
)
def preflight_burst(request: HttpRequest, id: int):
    """Staff only. What a send now would do, without sending: how many it would mail,
    how many it would skip and why, the errors that refuse the send and the warnings
    shown before it, as the admin's pre-flight page shows them."""
    _exists(id)
    result = selectors.burst_preflight(burst_id=id)
    return {
        "would_mail": result.to_send,
        "skipped": result.skipped,
        "errors": _preflight_errors(result),
        "warnings": [_check(c) for c in getattr(result, "warnings", [])],
        "sources": [{"source": label, "members": n} for label, n in result.sources],
        "excluded": [{"source": label, "members": n} for label, n in result.excluded],
    }


TEMPLATE_FIELD = re.compile(r"(subject|body|html_body|from_name)\b")


def _check(check: Any) -> dict[str, Any]:
    return check.as_dict() if hasattr(check, "as_dict") else dict(check)


def _preflight_errors(result: selectors.Preflight) -> list[dict[str, Any]]:
    """The checks that refuse the send, then the members whose message cannot be rendered."""
    if hasattr(result, "errors"):
        errors = [_check(c) for c in result.errors]
    elif result.template_error:
        # The message starts with the field: "body: …" or "body, line 3, at …: …".
        named = TEMPLATE_FIELD.match(result.template_error)
        errors = [{"field": named[1] if named else "", "message": result.template_error}]
    else:
        errors = []
    for _member_id, email, problem in result.render_failures:
        errors.append({"field": "member", "message": f"{email}: {problem}", "example": email})
    return errors


# --- bounces and complaints (SPEC 13) ----------------------------------------------------------------

SUPPRESSION_ERRORS = {**OBJECT_ERRORS, 409: ErrorOut}


@router.get(
    "/events/",
    response=responses({200: MailEventPage}),
    summary="List mail events (bounces, complaints)",
    operation_id="mail_events_list",
    tags=["mail events"],
)
def list_mail_events(request: HttpRequest, query: Query[MailEventQuery]):
    """Staff only. Bounces, complaints, delays and unreadable reports received after
    sending, newest first, filterable by `kind` and `burst`, paginated."""
    events = selectors.mail_events(kind=query.kind or "", burst_id=query.burst)
    return paginate(events, query, request)


@router.get(
    "/suppressions/",
    response=responses({200: SuppressionPage}),
    summary="List suppressed addresses",
    operation_id="suppressions_list",
    tags=["suppressions"],
)
def list_suppressions(request: HttpRequest, query: Query[SuppressionQuery]):
    """Staff only. Addresses no burst mails (their deliveries are skipped), newest
    first, `search` by part of the address, paginated."""
    return paginate(selectors.suppressions(search=query.search or ""), query, request)


@router.post(
    "/suppressions/",
    response=responses({201: SuppressionOut}, errors=SUPPRESSION_ERRORS),
    summary="Suppress an address",
    operation_id="suppressions_create",
    tags=["suppressions"],
)
def create_suppression(request: HttpRequest, payload: SuppressionIn):
    """Staff only. Later bursts skip the address (in any case). 409 when it is already
    suppressed, 422 for a bad address."""
    suppression = services.suppression_add(
        email=payload.email, reason=payload.reason, note=payload.note, actor=request.auth
    )
    return Status(201, suppression)


@router.delete(
    "/suppressions/{int:id}/",
    response=responses({204: None}, errors=OBJECT_ERRORS),
    summary="Remove a suppression",
    operation_id="suppressions_delete",
    tags=["suppressions"],
)
def delete_suppression(request: HttpRequest, id: int):
    """Staff only. The address may be mailed again."""
    services.suppression_remove(suppression_id=id)
    return Status(204, None)
