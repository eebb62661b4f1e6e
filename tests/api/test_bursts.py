"""Email-burst endpoints (issue 4 point 4)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailAttachment, EmailBurst
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db

FIELDS = {
    "id",
    "name",
    "lists",
    "segments",
    "exclude_lists",
    "exclude_segments",
    "subject",
    "body",
    "html_body",
    "sender",
    "from_name",
    "reply_to",
    "status",
    "pause_reason",
    "recipient_count",
    "all_members",
    "scheduled_at",
    "started_at",
    "finished_at",
    "created_at",
}


def burst_data(**extra):
    data = {"subject": "News for {{ member.first_name }}", "body": "Hello {{ member.first_name }}!"}
    data.update(extra)
    return data


def url(burst, action: str = "") -> str:
    pk = burst if isinstance(burst, int) else burst.pk
    return f"/api/email-burst/{pk}/" + (f"{action}/" if action else "")


# --- create, read, change, delete ------------------------------------------------------------


def test_create_answers_201_with_a_draft(as_staff, staff_user, member):
    other = MemberFactory()
    response = as_staff.post(
        "/api/email-burst/", burst_data(recipients=[member.pk, other.pk], from_name="Club")
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == FIELDS
    assert body["status"] == "draft" and body["recipient_count"] == 2 and body["all_members"] is False
    assert body["sender"] == "noreply@localhost" or "@" in body["sender"]
    burst = EmailBurst.objects.get(pk=body["id"])
    assert burst.created_by == staff_user
    assert set(burst.recipients.values_list("pk", flat=True)) == {member.pk, other.pk}


def test_create_for_all_members(as_staff, member, staff_user):
    MemberFactory(is_active=False)
    MemberFactory(unsubscribed_at=timezone.now())
    body = as_staff.post("/api/email-burst/", burst_data(all_members=True)).json()
    assert body["all_members"] is True
    assert body["recipient_count"] == 2  # ada and sam.staff: active and subscribed


def test_recipients_and_all_members_together_are_422(as_staff, member):
    response = as_staff.post("/api/email-burst/", burst_data(recipients=[member.pk], all_members=True))
    assert response.status_code == 422
    assert as_staff.post("/api/email-burst/", burst_data(recipients=[], all_members=True)).status_code == 201


def test_unknown_recipient_ids_are_a_422_listing_them(as_staff, member):
    response = as_staff.post("/api/email-burst/", burst_data(recipients=[member.pk, 99998, 99999]))
    assert response.status_code == 422
    item = response.json()["detail"][0]
    assert item["field"] == "recipients"
    assert "99998" in item["msg"] and "99999" in item["msg"]
    assert not EmailBurst.objects.exists()


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"subject": "x" * 201}, "subject"),
        ({"subject": "Line\nBreak"}, "subject"),
        ({"subject": "Carriage\rReturn"}, "subject"),
        ({"subject": ""}, "subject"),
        ({"body": ""}, "body"),
        ({"from_name": "a\r\nBcc: x@example.test"}, "from_name"),
        ({"sender": "not-an-address"}, "sender"),
        ({"reply_to": "nope"}, "reply_to"),
        ({"recipients": ["1"]}, "recipients.0"),
        ({"recipients": [0]}, "recipients.0"),
        ({"all_members": "true"}, "all_members"),
        ({"body": "{% if %}"}, "body"),
        ({"subject": "{{ member.first_name|nosuchfilter }}"}, "subject"),
        ({"html_body": "nul\x00"}, "html_body"),
    ],
)
def test_invalid_burst_input_is_422_naming_the_field(as_staff, extra, field):
    response = as_staff.post("/api/email-burst/", burst_data(**extra))
    assert response.status_code == 422, response.content
    assert field in [item["field"] for item in response.json()["detail"]], response.json()


def test_missing_subject_or_body_is_422(as_staff):
    response = as_staff.post("/api/email-burst/", {})
    assert response.status_code == 422
    assert "subject" in {item["field"] for item in response.json()["detail"]}
    # body may be left out when html_body is given; without either it is the body that is missing
    response = as_staff.post("/api/email-burst/", {"subject": "Hi"})
    assert response.status_code == 422
    assert [(item["field"], item["msg"]) for item in response.json()["detail"]] == [
        ("body", "body or html_body is required")
    ]


def test_subject_of_200_characters_is_fine(as_staff):
    assert as_staff.post("/api/email-burst/", burst_data(subject="x" * 200)).status_code == 201


def test_list_and_get(as_staff, member):
    first = BurstFactory(recipients=[member])
    second = BurstFactory(all_members=True)
    body = as_staff.get("/api/email-burst/").json()
    assert body["count"] == 2
    assert [b["id"] for b in body["items"]] == [second.pk, first.pk]  # newest first
    assert as_staff.get(url(first)).json()["recipient_count"] == 1
    assert as_staff.get(url(99999)).status_code == 404


def test_put_replaces_and_patch_updates(as_staff, member):
    burst = BurstFactory(recipients=[member], from_name="Old", html_body="<p>x</p>")
    response = as_staff.put(url(burst), burst_data(subject="New"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["subject"] == "New" and body["from_name"] == "" and body["html_body"] == ""
    assert body["recipient_count"] == 0  # recipients reset to []
    other = MemberFactory()
    body = as_staff.patch(url(burst), {"recipients": [member.pk, other.pk]}).json()
    assert body["recipient_count"] == 2 and body["subject"] == "New"
    body = as_staff.patch(url(burst), {"all_members": True}).json()
    assert body["all_members"] is True
    assert not EmailBurst.objects.get(pk=burst.pk).recipients.exists()
    assert as_staff.patch(url(burst), {"subject": "a\nb"}).status_code == 422
    assert as_staff.patch(url(burst), {"recipients": [123456]}).status_code == 422


@pytest.mark.parametrize(
    "status", [BurstStatus.SENDING, BurstStatus.PAUSED, BurstStatus.SENT, BurstStatus.CANCELLED]
)
def test_changing_or_deleting_a_started_burst_is_409(as_staff, status):
    burst = BurstFactory(status=status)
    assert as_staff.put(url(burst), burst_data()).status_code == 409
    assert as_staff.patch(url(burst), {"subject": "x"}).status_code == 409
    assert as_staff.delete(url(burst)).status_code == 409
    assert EmailBurst.objects.filter(pk=burst.pk).exists()


@pytest.mark.parametrize("status", [BurstStatus.DRAFT, BurstStatus.SCHEDULED])
def test_delete_a_draft_or_scheduled_burst(as_staff, status):
    burst = BurstFactory(status=status, scheduled_at=timezone.now() + timedelta(days=1))
    response = as_staff.delete(url(burst))
    assert response.status_code == 204 and response.content == b""
    assert not EmailBurst.objects.filter(pk=burst.pk).exists()


# --- state changes ------------------------------------------------------------------------------


def test_send_is_202_then_409(as_staff, member, staff_user):
    burst = BurstFactory(recipients=[member, staff_user])
    response = as_staff.post(url(burst, "send"))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "sending" and body["started_at"] and body["recipient_count"] == 2
    assert Delivery.objects.filter(burst=burst).count() == 2
    assert as_staff.post(url(burst, "send")).status_code == 409


def test_send_without_recipients_is_422(as_staff):
    response = as_staff.post(url(BurstFactory(), "send"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "recipients"


def test_schedule(as_staff, member):
    burst = BurstFactory(recipients=[member])
    when = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    response = as_staff.post(url(burst, "schedule"), {"send_at": when.isoformat()})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "scheduled"
    burst.refresh_from_db()
    assert burst.scheduled_at == when
    # reschedule
    later = when + timedelta(hours=1)
    assert as_staff.post(url(burst, "schedule"), {"send_at": later.isoformat()}).status_code == 202
    # a scheduled burst can still be sent now
    assert as_staff.post(url(burst, "send")).status_code == 202
    assert as_staff.post(url(burst, "schedule"), {"send_at": later.isoformat()}).status_code == 409


@pytest.mark.parametrize(
    "send_at",
    [
        "2001-01-01T00:00:00+00:00",  # past
        "2099-01-01T10:00:00",  # no time zone
        "tomorrow",
        "2099-13-01T00:00:00Z",
        1234567890,
        None,
    ],
)
def test_schedule_past_naive_or_malformed_is_422(as_staff, member, send_at):
    burst = BurstFactory(recipients=[member])
    response = as_staff.post(url(burst, "schedule"), {"send_at": send_at})
    assert response.status_code == 422, response.content
    assert response.json()["detail"][0]["field"] == "send_at"
    assert as_staff.post(url(burst, "schedule"), {}).status_code == 422


@pytest.mark.parametrize(
    ("send_at", "says"),
    [
        ("9999-12-31T23:30:00-05:00", "out of range"),  # year 10000 in UTC
        ("0001-01-01T00:30:00+01:00", "out of range"),  # year 0 in UTC
        ("9999-12-31T23:59:59+00:00", "at most 5 years ahead"),
        ("LATER", "at most 5 years ahead"),
    ],
)
def test_schedule_beyond_what_can_be_held_or_five_years_is_422_naming_the_limit(
    as_staff, member, send_at, says
):
    if send_at == "LATER":
        send_at = (timezone.now() + timedelta(days=5 * 366)).isoformat()
    burst = BurstFactory(recipients=[member])
    response = as_staff.post(url(burst, "schedule"), {"send_at": send_at})
    assert response.status_code == 422, response.content
    item = response.json()["detail"][0]
    assert item["field"] == "send_at" and says in item["msg"]
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT
    assert as_staff.get("/api/email-burst/").status_code == 200


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Etc/GMT+12"])  # UTC+14 and UTC-12
def test_the_latest_legal_schedule_is_listed_and_read(as_staff, member, settings, zone):
    from campaigns.services import schedule_limit

    settings.TIME_ZONE = zone
    burst = BurstFactory(recipients=[member])
    latest = schedule_limit(now=timezone.now()) - timedelta(seconds=30)
    response = as_staff.post(url(burst, "schedule"), {"send_at": latest.isoformat()})
    assert response.status_code == 202, response.content

    listed = as_staff.get("/api/email-burst/")
    assert listed.status_code == 200 and listed.json()["items"][0]["status"] == "scheduled"
    assert as_staff.get(url(burst)).json()["scheduled_at"].startswith(f"{latest.year}-")
    assert as_staff.get(url(burst, "stats")).status_code == 200


def test_pause_resume_cancel(as_staff, member):
    burst = BurstFactory(recipients=[member])
    # illegal in draft
    for action in ("pause", "resume", "cancel"):
        assert as_staff.post(url(burst, action)).status_code == 409, action
    as_staff.post(url(burst, "send"))
    assert as_staff.post(url(burst, "resume")).status_code == 409
    response = as_staff.post(url(burst, "pause"))
    assert response.status_code == 202 and response.json()["status"] == "paused"
    assert response.json()["pause_reason"]
    assert as_staff.post(url(burst, "pause")).status_code == 409
    response = as_staff.post(url(burst, "resume"))
    assert response.status_code == 202 and response.json()["status"] == "sending"
    response = as_staff.post(url(burst, "cancel"))
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert Delivery.objects.get(burst=burst).status == DeliveryStatus.SKIPPED
    for action in ("pause", "resume", "cancel", "send"):
        assert as_staff.post(url(burst, action)).status_code == 409, action


def test_cancel_a_scheduled_burst(as_staff):
    burst = BurstFactory(status=BurstStatus.SCHEDULED, scheduled_at=timezone.now() + timedelta(days=1))
    assert as_staff.post(url(burst, "cancel")).json()["status"] == "cancelled"


def _deliveries(burst, members, statuses):
    assert len(members) == len(statuses)
    DeliveryFactory.create_for(burst, members, status=lambda i: statuses[i], ready=False)


def test_retry(as_staff):
    people = [MemberFactory() for _ in range(4)]
    burst = BurstFactory(status=BurstStatus.SENT, recipients=people, deliveries_ready=True)
    _deliveries(
        burst,
        people,
        [
            DeliveryStatus.FAILED,
            DeliveryStatus.CONNECTION_ERROR,
            DeliveryStatus.NOT_FOUND,
            DeliveryStatus.SENT,
        ],
    )
    assert as_staff.post(url(burst, "retry"), {"statuses": ["not_found"]}).status_code == 422
    assert as_staff.post(url(burst, "retry"), {"statuses": ["bogus"]}).status_code == 422
    response = as_staff.post(url(burst, "retry"))  # default: connection_error and failed
    assert response.status_code == 202, response.content
    assert response.json() == {"email_burst_id": burst.pk, "requeued": 2}
    assert Delivery.objects.filter(burst=burst, status=DeliveryStatus.PENDING).count() == 2
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENDING


def test_retry_with_explicit_statuses_and_in_a_draft(as_staff):
    people = [MemberFactory() for _ in range(2)]
    burst = BurstFactory(status=BurstStatus.PAUSED, recipients=people, deliveries_ready=True)
    _deliveries(burst, people, [DeliveryStatus.OTHER_ERROR, DeliveryStatus.FAILED])
    response = as_staff.post(url(burst, "retry"), {"statuses": ["other_error"]})
    assert response.json()["requeued"] == 1
    assert as_staff.post(url(BurstFactory(), "retry")).status_code == 409


# --- figures ---------------------------------------------------------------------------------


def test_stats(as_staff):
    people = [MemberFactory() for _ in range(7)]
    burst = BurstFactory(status=BurstStatus.SENDING, recipients=people)
    _deliveries(
        burst,
        people,
        [
            DeliveryStatus.SENT,
            DeliveryStatus.SENT,
            DeliveryStatus.SENT,
            DeliveryStatus.FAILED,
            DeliveryStatus.NOT_FOUND,
            DeliveryStatus.PENDING,
            DeliveryStatus.SKIPPED,
        ],
    )
    response = as_staff.get(url(burst, "stats"))
    assert response.status_code == 200
    assert response.json() == {
        "email_burst_id": burst.pk,
        "status": "sending",
        "total_recipients": 7,
        "sent_count": 3,
        "failed_count": 2,
        "pending_count": 1,
        "skipped_count": 1,
        "success_rate": 50.0,
        "retrying_count": 0,
        "next_retry_at": None,
        "bounced_count": 0,
        "complained_count": 0,
        "status_counts": {
            "pending": 1,
            "sent": 3,
            "not_found": 1,
            "failed": 1,
            "connection_error": 0,
            "other_error": 0,
            "skipped": 1,
        },
    }
    assert as_staff.get(url(99999, "stats")).status_code == 404


def test_stats_of_an_empty_burst(as_staff):
    body = as_staff.get(url(BurstFactory(), "stats")).json()
    assert body["total_recipients"] == 0 and body["success_rate"] == 0


def test_deliveries_paginated_and_filtered(as_staff):
    people = [MemberFactory() for _ in range(5)]
    burst = BurstFactory(status=BurstStatus.SENDING, recipients=people)
    _deliveries(
        burst,
        people,
        [
            DeliveryStatus.SENT,
            DeliveryStatus.SENT,
            DeliveryStatus.FAILED,
            DeliveryStatus.SENT,
            DeliveryStatus.PENDING,
        ],
    )
    Delivery.objects.filter(status=DeliveryStatus.FAILED).update(error_message="550 5.7.1 Policy")
    body = as_staff.get(url(burst, "deliveries")).json()
    assert body["count"] == 5
    item = body["items"][0]
    assert set(item) == {
        "id",
        "member_id",
        "email",
        "status",
        "attempts",
        "error_message",
        "sent_at",
        "updated_at",
    }
    assert item["member_id"] == people[0].pk and item["email"] == people[0].email
    sent = as_staff.get(url(burst, "deliveries"), {"status": "sent", "limit": 2}).json()
    assert sent["count"] == 3 and len(sent["items"]) == 2
    failed = as_staff.get(url(burst, "deliveries"), {"status": "failed"}).json()
    assert failed["items"][0]["error_message"] == "550 5.7.1 Policy"
    assert as_staff.get(url(burst, "deliveries"), {"status": "bogus"}).status_code == 422
    assert as_staff.get(url(99999, "deliveries")).status_code == 404


# --- attachments -------------------------------------------------------------------------------


def upload(api, burst, name="notes.txt", content=b"hello", **kw):
    return api.client.post(
        url(burst, "attachments"),
        {"file": SimpleUploadedFile(name, content, content_type="text/plain")},
        headers=api.headers(),
        **kw,
    )


def test_upload_an_attachment(as_staff):
    burst = BurstFactory()
    response = upload(as_staff, burst)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["filename"] == "notes.txt" and body["size"] == 5 and body["content_type"] == "text/plain"
    attachment = EmailAttachment.objects.get(pk=body["id"])
    assert attachment.burst == burst and attachment.file.read() == b"hello"


def test_attachment_above_the_limit_is_413(as_staff, settings):
    settings.ATTACHMENT_MAX_SIZE = 1000
    burst = BurstFactory()
    assert upload(as_staff, burst, content=b"x" * 1000).status_code == 201
    assert upload(as_staff, burst, content=b"x" * 1001).status_code == 413
    # far above: refused from the Content-Length before the body is read
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    assert upload(as_staff, burst, content=b"x" * 10_000).status_code == 413
    assert EmailAttachment.objects.filter(burst=burst).count() == 1


def test_attachments_beyond_the_count_limit_are_422_naming_it(as_staff, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.ATTACHMENT_MAX_COUNT = 2
    burst = BurstFactory()
    assert [upload(as_staff, burst, name=f"{i}.txt").status_code for i in range(2)] == [201, 201]
    response = upload(as_staff, burst, name="2.txt")
    assert response.status_code == 422
    item = response.json()["detail"][0]
    assert item["field"] == "file" and "ATTACHMENT_MAX_COUNT" in item["msg"] and "at most 2" in item["msg"]
    assert EmailAttachment.objects.filter(burst=burst).count() == 2


def test_attachments_beyond_the_total_limit_are_413_naming_it(as_staff, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.ATTACHMENT_MAX_TOTAL = 12
    burst = BurstFactory()
    assert upload(as_staff, burst, content=b"x" * 10).status_code == 201
    response = upload(as_staff, burst, content=b"x" * 3)
    assert response.status_code == 413
    assert "ATTACHMENT_MAX_TOTAL" in response.json()["detail"] and "12 bytes" in response.json()["detail"]
    assert upload(as_staff, burst, content=b"x" * 2).status_code == 201  # exactly the limit
    assert EmailAttachment.objects.filter(burst=burst).count() == 2


def test_attachment_to_a_started_burst_is_409(as_staff):
    assert upload(as_staff, BurstFactory(status=BurstStatus.SENT)).status_code == 409


def test_upload_without_a_file_is_422(as_staff):
    burst = BurstFactory()
    response = as_staff.client.post(url(burst, "attachments"), {"other": "x"}, headers=as_staff.headers())
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "file"


def test_the_api_takes_and_answers_the_name(as_staff):
    response = as_staff.post(
        "/api/email-burst/",
        {"name": "Board letter", "subject": "Hi {{ member.first_name }}", "body": "Hello"},
    )
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "Board letter"
    burst_id = response.json()["id"]
    response = as_staff.patch(f"/api/email-burst/{burst_id}/", {"name": "x" * 201})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "name"
