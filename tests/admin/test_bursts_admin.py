"""Bursts in the admin: list columns, bulk actions with per-burst messages, the
burst page's buttons (legal ones only, POST only, permission-checked), compose
validation through the engine's checks, attachments, preview, pre-flight, send a
test, progress JSON, delivery report (paginated, filterable, exportable), retry."""

from __future__ import annotations

import csv
import io
import json
import re
import zoneinfo
from datetime import datetime, timedelta

import openpyxl
import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Count
from django.utils import timezone

from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailAttachment, EmailBurst
from members.models import Member
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/campaigns/emailburst/"


def page_url(burst: EmailBurst, action: str = "change") -> str:
    return f"{LIST}{burst.pk}/{action}/"


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def bulk(client, action: str, bursts, **extra):
    data = {"action": action, "_selected_action": [b.pk for b in bursts], "index": 0, **extra}
    return client.post(LIST, data, follow=True)


def status_of(burst: EmailBurst) -> str:
    return EmailBurst.objects.values_list("status", flat=True).get(pk=burst.pk)


CELL = re.compile(r'<(th|td) class="field-(\w+)[^"]*"[^>]*>(.*?)</\1>', re.S)


def rendered_rows(html: str) -> dict[str, dict[str, str]]:
    """The change list's rows by burst name: each column's text (without the created date)."""
    rows: dict[str, dict[str, str]] = {}
    for _, column, cell in CELL.findall(html):
        text = " ".join(re.sub(r"<[^>]+>", " ", cell).split())
        if column == "name_column":
            row = rows.setdefault(text, {})
        elif column != "created_at":
            row[column] = text
    return rows


OUTCOMES = [DeliveryStatus.SENT] * 6 + [
    DeliveryStatus.FAILED,
    DeliveryStatus.NOT_FOUND,
    DeliveryStatus.SKIPPED,
]


@pytest.fixture
def members(db) -> list[Member]:
    return MemberFactory.create_bulk(9)


@pytest.fixture
def sent_burst(members) -> EmailBurst:
    burst = BurstFactory(subject="Winter gala", status=BurstStatus.SENT, recipients=members)
    DeliveryFactory.create_for(burst, members, status=lambda i: OUTCOMES[i])
    EmailBurst.objects.filter(pk=burst.pk).update(
        started_at=timezone.now() - timedelta(seconds=30), finished_at=timezone.now()
    )
    return EmailBurst.objects.get(pk=burst.pk)


# --- list ----------------------------------------------------------------------------------------


def test_list_columns(root_client, members, sent_burst):
    BurstFactory(subject="Draft for three", recipients=members[:3])
    BurstFactory(subject="Everyone", all_members=True)
    response = root_client.get(LIST)
    rows = {b.subject: b for b in response.context["cl"].result_list}
    assert rows["Winter gala"].recipient_count == 9
    assert (rows["Winter gala"].n_sent, rows["Winter gala"].n_failed, rows["Winter gala"].n_skipped) == (
        6,
        2,
        1,
    )
    assert rows["Draft for three"].recipient_count == 3
    assert rows["Everyone"].recipient_count == Member.objects.count()
    # what each row shows, cell by cell
    shown = rendered_rows(response.content.decode())
    finished = f"finished {timezone.localtime(sent_burst.finished_at):%Y-%m-%d %H:%M}"
    assert shown["Winter gala"] == {
        "status_badge": "Sent",
        "recipients_column": "9",
        "sent_column": "6",
        "failed_column": "2",
        "success_rate_column": "75.0 %",  # 6 sent of 8 to send
        "when_column": finished,
    }
    nothing_yet = {"sent_column": "—", "failed_column": "—", "success_rate_column": "—", "when_column": "—"}
    assert shown["Draft for three"] == {"status_badge": "Draft", "recipients_column": "3", **nothing_yet}
    everyone = f"{Member.objects.count()} (all)"
    assert shown["Everyone"] == {"status_badge": "Draft", "recipients_column": everyone, **nothing_yet}


# --- bulk actions ----------------------------------------------------------------------------------


def test_send_now_says_what_happened_to_each_burst(root_client, members, sent_burst):
    first = BurstFactory(subject="First", recipients=members[:2])
    second = BurstFactory(subject="Second", recipients=members[2:4], status=BurstStatus.SCHEDULED)
    response = bulk(root_client, "send_now", [first, second, sent_burst])
    text = " ".join(messages_of(response))
    assert "2 started" in text and "1 skipped: already sent" in text and "Winter gala" in text
    assert status_of(first) == status_of(second) == BurstStatus.SENDING
    assert Delivery.objects.filter(burst=first).count() == 2


def test_send_now_without_recipients_is_skipped_with_the_reason(root_client):
    empty = BurstFactory(subject="Nobody")
    text = " ".join(messages_of(bulk(root_client, "send_now", [empty])))
    assert "0 started" in text and "no recipients" in text
    assert status_of(empty) == BurstStatus.DRAFT


def test_bulk_cancel(root_client, members):
    scheduled = BurstFactory(
        subject="S", status=BurstStatus.SCHEDULED, scheduled_at=timezone.now() + timedelta(days=1)
    )
    paused = BurstFactory(subject="P", status=BurstStatus.PAUSED)
    draft = BurstFactory(subject="D")
    text = " ".join(messages_of(bulk(root_client, "cancel_selected", [scheduled, paused, draft])))
    assert "2 cancelled" in text and "1 skipped" in text
    assert status_of(scheduled) == status_of(paused) == BurstStatus.CANCELLED
    assert status_of(draft) == BurstStatus.DRAFT


def test_duplicate_as_draft(root_client, superuser, members, sent_burst):
    response = bulk(root_client, "duplicate_as_draft", [sent_burst])
    assert "1 duplicated as draft" in " ".join(messages_of(response))
    copy = EmailBurst.objects.exclude(pk=sent_burst.pk).get()
    assert copy.status == BurstStatus.DRAFT and copy.subject == "Winter gala"
    assert copy.created_by == superuser and copy.recipients.count() == 9


def test_schedule_asks_for_a_local_time_and_shows_the_zone(root_client, settings, members):
    settings.TIME_ZONE = "Europe/Paris"
    first = BurstFactory(subject="A", recipients=members[:1])
    second = BurstFactory(subject="B", recipients=members[1:2])
    page = root_client.post(
        LIST, {"action": "schedule_selected", "_selected_action": [first.pk, second.pk], "index": 0}
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "Europe/Paris (UTC+0" in html and 'type="datetime-local"' in html
    assert status_of(first) == BurstStatus.DRAFT  # nothing happened yet

    year = timezone.now().year + 1
    response = bulk(
        root_client, "schedule_selected", [first, second], apply="1", send_at=f"{year}-01-15T09:30"
    )
    assert "2 scheduled" in " ".join(messages_of(response))
    expected = datetime(year, 1, 15, 9, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    assert EmailBurst.objects.get(pk=first.pk).scheduled_at == expected
    assert expected.astimezone(zoneinfo.ZoneInfo("UTC")).hour == 8


def test_schedule_refuses_a_past_time(root_client, members):
    burst = BurstFactory(subject="A", recipients=members[:1])
    page = root_client.post(
        LIST,
        {
            "action": "schedule_selected",
            "_selected_action": [burst.pk],
            "apply": "1",
            "send_at": "2001-01-01T10:00",
        },
    )
    assert page.status_code == 200 and "Choose a time in the future." in page.content.decode()
    assert status_of(burst) == BurstStatus.DRAFT


# --- permissions --------------------------------------------------------------------------------------


def test_without_the_send_permission_no_send_actions_and_403(editor_client, members):
    burst = BurstFactory(subject="Draft", recipients=members[:2])
    response = editor_client.get(LIST)
    actions = dict(response.context["action_form"].fields["action"].choices)
    assert "duplicate_as_draft" in actions
    assert not {"send_now", "schedule_selected", "cancel_selected"} & set(actions)

    html = editor_client.get(page_url(burst)).content.decode()
    for action in ("send", "schedule", "cancel", "pause", "resume", "retry"):
        assert f"/{burst.pk}/{action}/" not in html
    for action in ("send", "schedule", "cancel", "pause", "resume", "retry"):
        assert editor_client.get(page_url(burst, action)).status_code == 403
        assert editor_client.post(page_url(burst, action)).status_code == 403
    bulk(editor_client, "send_now", [burst])
    assert status_of(burst) == BurstStatus.DRAFT
    # Editing and checking stay possible.
    assert editor_client.get(page_url(burst, "preview")).status_code == 200
    assert editor_client.get(page_url(burst, "preflight")).status_code == 200


def test_non_staff_members_never_reach_the_admin(client, member):
    client.force_login(member)
    assert client.get(LIST).status_code == 302


# --- buttons on the burst page -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, shown",
    [
        (BurstStatus.DRAFT, {"send", "schedule"}),
        (BurstStatus.SCHEDULED, {"send", "schedule", "cancel"}),
        (BurstStatus.SENDING, {"pause", "cancel"}),
        (BurstStatus.PAUSED, {"resume", "cancel"}),
        (BurstStatus.SENT, set()),  # nothing failed: nothing to retry
        (BurstStatus.CANCELLED, set()),
    ],
)
def test_only_legal_buttons_are_shown(root_client, status, shown):
    burst = BurstFactory(subject="B", status=status)
    html = root_client.get(page_url(burst)).content.decode()
    present = {
        a for a in ("send", "schedule", "pause", "resume", "cancel", "retry") if f"/{burst.pk}/{a}/" in html
    }
    assert present == shown
    assert f"/{burst.pk}/preview/" in html


def test_a_button_is_a_confirmation_page_and_only_post_acts(root_client, members):
    burst = BurstFactory(subject="Draft", recipients=members[:3])
    page = root_client.get(page_url(burst, "send"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'method="post"' in html and "csrfmiddlewaretoken" in html and "Send now" in html
    assert status_of(burst) == BurstStatus.DRAFT
    response = root_client.post(page_url(burst, "send"), follow=True)
    assert status_of(burst) == BurstStatus.SENDING
    assert "Sending of “Draft” started." in messages_of(response)


def test_pause_resume_cancel(root_client):
    burst = BurstFactory(subject="Live", status=BurstStatus.SENDING)
    root_client.post(page_url(burst, "pause"))
    assert status_of(burst) == BurstStatus.PAUSED
    root_client.post(page_url(burst, "resume"))
    assert status_of(burst) == BurstStatus.SENDING
    root_client.post(page_url(burst, "cancel"))
    assert status_of(burst) == BurstStatus.CANCELLED


def test_an_illegal_action_changes_nothing_and_says_why(root_client, sent_burst):
    response = root_client.post(page_url(sent_burst, "pause"), follow=True)
    assert status_of(sent_burst) == BurstStatus.SENT
    assert any("Only a sending burst can be paused" in m for m in messages_of(response))
    response = root_client.get(page_url(sent_burst, "send"), follow=True)
    assert any("already sent" in m for m in messages_of(response))


def test_schedule_button(root_client, settings, members):
    settings.TIME_ZONE = "America/New_York"
    burst = BurstFactory(subject="Later", recipients=members[:1])
    page = root_client.get(page_url(burst, "schedule"))
    assert "America/New_York (UTC-0" in page.content.decode()
    year = timezone.now().year + 1
    root_client.post(page_url(burst, "schedule"), {"send_at": f"{year}-07-04T12:00"})
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SCHEDULED
    assert burst.scheduled_at == datetime(year, 7, 4, 16, 0, tzinfo=zoneinfo.ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("zone", "send_at", "says"),
    [
        ("America/New_York", "9999-12-31T23:30", "out of range"),  # year 10000 in UTC
        ("Europe/Paris", "0001-01-01T00:30", "Choose a time in the future."),
        ("Pacific/Kiritimati", "0001-01-01T00:30", "Choose a time in the future."),
        ("UTC", "LATER", "at most 5 years ahead"),
    ],
)
def test_both_schedule_forms_refuse_what_cannot_be_held_or_is_over_five_years_ahead(
    root_client, settings, members, zone, send_at, says
):
    settings.TIME_ZONE = zone
    if send_at == "LATER":
        send_at = f"{timezone.now().year + 6}-01-01T00:00"
    burst = BurstFactory(subject="A", recipients=members[:1])
    page = root_client.post(page_url(burst, "schedule"), {"send_at": send_at})
    assert page.status_code == 200 and says in page.content.decode()
    bulk_page = root_client.post(
        LIST,
        {"action": "schedule_selected", "_selected_action": [burst.pk], "apply": "1", "send_at": send_at},
    )
    assert bulk_page.status_code == 200 and says in bulk_page.content.decode()
    assert status_of(burst) == BurstStatus.DRAFT
    assert root_client.get(LIST).status_code == 200


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (LIST, "created_at_from_0=9999-12-31&created_at_from_1=23:30"),
        (LIST, "created_at__gte=9999-12-31+23:30"),
        ("/admin/campaigns/delivery/", "updated_at_from_0=9999-12-31&updated_at_from_1=23:30"),
    ],
)
def test_a_date_filter_beyond_year_9999_in_utc_is_a_bad_filter_not_an_error(
    root_client, settings, path, query
):
    settings.TIME_ZONE = "America/New_York"
    response = root_client.get(f"{path}?{query}")
    if response.status_code == 302:  # SQLite cannot convert the value: Django's "bad filter" answer
        assert response["Location"] == f"{path}?e=1"
        response = root_client.get(response["Location"])
    assert response.status_code == 200  # PostgreSQL compares with year 10000 and finds nothing


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Etc/GMT+12"])  # UTC+14 and UTC-12
def test_every_page_answers_for_the_latest_legal_schedule(root_client, settings, members, zone):
    from campaigns.services import schedule_limit
    from tests.api.conftest import Api, access_token

    settings.TIME_ZONE = zone
    burst = BurstFactory(subject="Far ahead", recipients=members[:1])
    local_latest = timezone.localtime(schedule_limit(now=timezone.now()) - timedelta(minutes=1))
    response = root_client.post(page_url(burst, "schedule"), {"send_at": f"{local_latest:%Y-%m-%dT%H:%M}"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert status_of(burst) == BurstStatus.SCHEDULED

    for path in (
        LIST,
        page_url(burst),
        page_url(burst, "schedule"),
        "/admin/",
        f"{page_url(burst, 'progress')}",
    ):
        assert root_client.get(path).status_code == 200, path
    assert f"due {local_latest:%Y-%m-%d %H:%M}" in root_client.get(LIST).content.decode()
    api = Api(access_token(Member.objects.get(username="root")))
    assert api.get("/api/email-burst/").status_code == 200
    assert api.get(f"/api/email-burst/{burst.pk}/").status_code == 200


# --- compose ---------------------------------------------------------------------------------------------


def compose(**fields) -> dict:
    data = {
        "subject": "Hello {{ member.first_name }}",
        "body": "Hi {{ member.first_name }}",
        "html_body": "",
        "sender": "news@example.test",
        "from_name": "News",
        "reply_to": "",
        "attachments-TOTAL_FORMS": "0",
        "attachments-INITIAL_FORMS": "0",
        "attachments-MIN_NUM_FORMS": "0",
        "attachments-MAX_NUM_FORMS": "1000",
    }
    data.update(fields)
    return data


def test_create_goes_through_the_service(root_client, superuser, members):
    response = root_client.post(f"{LIST}add/", compose(recipients=[members[0].pk, members[1].pk]))
    assert response.status_code == 302, response.content.decode()[:2000]
    burst = EmailBurst.objects.get()
    assert burst.created_by == superuser and burst.status == BurstStatus.DRAFT
    assert set(burst.recipients.values_list("pk", flat=True)) == {members[0].pk, members[1].pk}


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"body": "{% load static %}Hi"}, "body"),
        ({"html_body": "{% include 'x.html' %}"}, "html_body"),
        ({"subject": "Hi {% if %}"}, "subject"),
        ({"subject": "Two\r\nlines"}, "line breaks"),
    ],
)
def test_templates_are_checked_on_save(root_client, fields, message):
    response = root_client.post(f"{LIST}add/", compose(**fields))
    assert response.status_code == 200
    errors = str(response.context["adminform"].form.errors)
    assert message in errors
    assert not EmailBurst.objects.exists()


def test_members_or_all_members_not_both(root_client, members):
    response = root_client.post(f"{LIST}add/", compose(all_members="on", recipients=[members[0].pk]))
    assert response.status_code == 200 and "already mails everyone" in response.content.decode()


def test_edit_updates_through_the_service(root_client, members):
    burst = BurstFactory(subject="Old", recipients=members[:1])
    response = root_client.post(page_url(burst), compose(subject="New", recipients=[members[2].pk]))
    assert response.status_code == 302
    burst.refresh_from_db()
    assert burst.subject == "New" and list(burst.recipients.values_list("pk", flat=True)) == [members[2].pk]


def test_a_started_burst_is_read_only(root_client, sent_burst):
    page = root_client.get(page_url(sent_burst))
    assert page.status_code == 200 and 'name="subject"' not in page.content.decode()
    assert root_client.post(page_url(sent_burst), compose(subject="Changed")).status_code == 403
    assert EmailBurst.objects.get(pk=sent_burst.pk).subject == "Winter gala"


def test_attachments(root_client, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    data = compose(
        **{
            "attachments-TOTAL_FORMS": "1",
            "attachments-0-file": SimpleUploadedFile(
                "agenda.txt", b"1. Welcome\n", content_type="text/plain"
            ),
        }
    )
    response = root_client.post(f"{LIST}add/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    attachment = EmailAttachment.objects.get()
    assert (attachment.filename, attachment.size, attachment.content_type) == ("agenda.txt", 11, "text/plain")

    settings.ATTACHMENT_MAX_SIZE = 10
    data["attachments-0-file"] = SimpleUploadedFile("big.bin", b"x" * 11)
    response = root_client.post(f"{LIST}add/", data)
    assert response.status_code == 200 and "at most" in response.content.decode()


def attachment_forms(*files: SimpleUploadedFile, initial: int = 0) -> dict:
    data = {"attachments-TOTAL_FORMS": str(len(files) + initial), "attachments-INITIAL_FORMS": str(initial)}
    for i, upload in enumerate(files, start=initial):
        data[f"attachments-{i}-file"] = upload
    return data


def test_the_attachment_inline_says_when_the_count_or_total_limit_is_passed(root_client, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.ATTACHMENT_MAX_COUNT = 2
    files = [SimpleUploadedFile(f"{i}.txt", b"12345") for i in range(3)]
    response = root_client.post(f"{LIST}add/", compose(**attachment_forms(*files)))
    assert response.status_code == 200
    assert "at most 2 attachments (ATTACHMENT_MAX_COUNT)" in response.content.decode()
    assert not EmailBurst.objects.exists() and not EmailAttachment.objects.exists()

    settings.ATTACHMENT_MAX_COUNT = 20
    settings.ATTACHMENT_MAX_TOTAL = 12
    files = [SimpleUploadedFile(f"{i}.txt", b"12345") for i in range(3)]
    response = root_client.post(f"{LIST}add/", compose(**attachment_forms(*files)))
    assert response.status_code == 200 and "ATTACHMENT_MAX_TOTAL" in response.content.decode()
    assert not EmailAttachment.objects.exists()

    files = [SimpleUploadedFile(f"{i}.txt", b"123456") for i in range(2)]  # exactly 12 bytes
    assert root_client.post(f"{LIST}add/", compose(**attachment_forms(*files))).status_code == 302
    assert EmailAttachment.objects.count() == 2


def test_a_burst_already_over_a_lowered_limit_can_still_be_edited(root_client, settings, tmp_path):
    from campaigns import services

    settings.MEDIA_ROOT = str(tmp_path)
    burst = BurstFactory(subject="Two files")
    kept = [
        services.attachment_add(burst_id=burst.pk, uploaded_file=SimpleUploadedFile(f"{i}.txt", b"1"))
        for i in range(2)
    ]
    settings.ATTACHMENT_MAX_COUNT = 1
    data = compose(subject="Renamed", **attachment_forms(initial=2))
    for i, attachment in enumerate(kept):
        data[f"attachments-{i}-id"] = str(attachment.pk)
        data[f"attachments-{i}-burst"] = str(burst.pk)
    response = root_client.post(page_url(burst), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert EmailBurst.objects.get(pk=burst.pk).subject == "Renamed"
    assert EmailAttachment.objects.filter(burst=burst).count() == 2


# --- preview, pre-flight, send a test ---------------------------------------------------------------------


def test_preview_renders_for_a_chosen_member_in_a_sandboxed_iframe(root_client, members):
    burst = BurstFactory(
        subject="For {{ member.first_name }}",
        recipients=members[:2],
        html_body="<script>alert(1)</script><p>Hi {{ member.first_name }}</p>",
    )
    chosen = members[1]
    html = root_client.get(page_url(burst, "preview"), {"member": chosen.pk}).content.decode()
    assert f"For {chosen.first_name}" in html
    assert 'sandbox=""' in html and "part=html" in html
    assert "<script>alert(1)</script>" not in html  # served alone to the frame (tests/admin/test_xss.py)
    frame = root_client.get(page_url(burst, "preview"), {"member": chosen.pk, "part": "html"})
    assert frame.content.decode() == f"<script>alert(1)</script><p>Hi {chosen.first_name}</p>"
    html = root_client.get(page_url(burst, "preview"), {"email": "nobody@example.test"}).content.decode()
    assert "No member with the address nobody@example.test" in html


def test_preflight(root_client, members):
    members[0].unsubscribed_at = timezone.now()
    members[0].save()
    burst = BurstFactory(subject="Check", recipients=members[:4])
    page = root_client.get(page_url(burst, "preflight"))
    assert page.context["preflight"].to_send == 3
    html = page.content.decode()
    assert "the member unsubscribed" in html and "Ready to send." in html


def test_preflight_shows_a_template_error(root_client, members):
    burst = BurstFactory(subject="Check", recipients=members[:1], body="{% for %}")
    html = root_client.get(page_url(burst, "preflight")).content.decode()
    assert "template error" in html and "Fix the template before sending." in html


def test_send_a_test_to_me(root_client, superuser, smtp_settings, members):
    burst = BurstFactory(subject="Test me {{ member.first_name }}", recipients=members[:3])
    assert root_client.get(page_url(burst, "send-test")).status_code == 200
    assert smtp_settings.message_count == 0  # a GET sends nothing
    response = root_client.post(page_url(burst, "send-test"), follow=True)
    assert any("sent to root@example.test" in m for m in messages_of(response))
    assert smtp_settings.wait_for_messages(1)
    message = smtp_settings.messages[0]
    assert message.rcpt_tos == ("root@example.test",)
    assert b"[TEST]" in message.raw
    assert not Delivery.objects.filter(burst=burst).exists()
    assert status_of(burst) == BurstStatus.DRAFT


def test_send_a_test_reports_an_unreachable_server(root_client, settings, members):
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 1
    burst = BurstFactory(subject="Test", recipients=members[:1])
    response = root_client.post(page_url(burst, "send-test"), follow=True)
    assert any("not sent" in m for m in messages_of(response))


# --- delivery report --------------------------------------------------------------------------------------------


def test_report_figures_and_chart(root_client, sent_burst):
    page = root_client.get(page_url(sent_burst))
    stats = page.context["stats"]
    assert (stats.total_recipients, stats.sent_count, stats.failed_count, stats.skipped_count) == (9, 6, 2, 1)
    chart = json.loads(page.context["chart_data"])
    assert dict(zip(chart["labels"], chart["datasets"][0]["data"], strict=True)) == {
        "Sent": 6,
        "Skipped": 1,
        "Not found": 1,
        "Rejected": 1,
    }
    html = page.content.decode()
    assert 'data-type="doughnut"' in html and 'id="progress-bar"' in html
    assert "Retry failed deliveries (1)" in html  # failed + connection_error + other_error
    assert f"/{sent_burst.pk}/retry/" in html


def test_progress_json(root_client, members):
    burst = BurstFactory(subject="Live", status=BurstStatus.SENDING, recipients=members)
    EmailBurst.objects.filter(pk=burst.pk).update(
        started_at=timezone.now() - timedelta(seconds=10), sending_seconds=10
    )
    DeliveryFactory.create_for(
        burst, members, status=lambda i: DeliveryStatus.SENT if i < 4 else DeliveryStatus.PENDING
    )
    data = root_client.get(page_url(burst, "progress")).json()
    assert (data["status"], data["total"], data["sent"], data["pending"], data["done"]) == (
        "sending",
        9,
        4,
        5,
        4,
    )
    assert data["percent"] == pytest.approx(44.4)
    assert 0.2 < data["rate"] < 1.0  # 4 messages in about 10 s
    assert 4 < data["eta_seconds"] < 30
    assert data["status_counts"]["pending"] == 5


def test_deliveries_are_paginated_and_filterable(root_client):
    people = MemberFactory.create_bulk(60, prefix="pg")
    burst = BurstFactory(subject="Big", status=BurstStatus.SENT, recipients=people)
    DeliveryFactory.create_for(
        burst, people, status=lambda i: DeliveryStatus.FAILED if i % 10 == 0 else DeliveryStatus.SENT
    )
    page = root_client.get(page_url(burst))
    assert len(page.context["deliveries"].object_list) == 25
    assert page.context["deliveries"].paginator.num_pages == 3
    page = root_client.get(page_url(burst), {"dpage": 3})
    assert len(page.context["deliveries"].object_list) == 10
    page = root_client.get(page_url(burst), {"dstatus": "failed"})
    rows = page.context["deliveries"].object_list
    assert len(rows) == 6 and {d.status for d in rows} == {"failed"}
    html = page.content.decode()
    assert f"/admin/campaigns/delivery/?burst__id__exact={burst.pk}&amp;status__exact=failed" in html
    assert "554 5.7.1 Rejected" in html
    page = root_client.get(page_url(burst), {"dq": people[0].email})
    assert [d.email for d in page.context["deliveries"].object_list] == [people[0].email]


def test_delivery_changelist_filtered_by_burst_and_status(root_client, sent_burst):
    other = BurstFactory(subject="Other", status=BurstStatus.SENT)
    DeliveryFactory.create_for(other, MemberFactory.create_bulk(3, prefix="ot"), status=DeliveryStatus.SENT)
    response = root_client.get(
        "/admin/campaigns/delivery/", {"burst__id__exact": sent_burst.pk, "status__exact": "failed"}
    )
    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert len(rows) == 1 and rows[0].burst_id == sent_burst.pk
    assert response.context["cl"].model_admin.show_full_result_count is False
    assert root_client.get("/admin/campaigns/delivery/add/").status_code == 403


def test_report_export_csv_and_xlsx(root_client, sent_burst):
    Delivery.objects.filter(burst=sent_burst, status=DeliveryStatus.FAILED).update(
        error_message="=cmd|' /C calc'!A0"
    )
    response = root_client.get(page_url(sent_burst, "report/csv"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert f"burst-{sent_burst.pk}-winter-gala-deliveries.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 9
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["smtp_reply"].startswith("'=cmd")
    assert failed["burst_subject"] == "Winter gala"

    response = root_client.get(page_url(sent_burst, "report/xlsx"))
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    assert sheet.max_row == 10
    assert root_client.get(page_url(sent_burst, "report/pdf")).status_code == 404


# --- retry -------------------------------------------------------------------------------------------------------


def test_retry_page_defaults_and_requeues_only_the_chosen_classes(root_client, members):
    burst = BurstFactory(subject="Retry me", status=BurstStatus.SENT, recipients=members)
    kinds = [DeliveryStatus.FAILED] * 2 + [DeliveryStatus.CONNECTION_ERROR] * 2 + [DeliveryStatus.OTHER_ERROR]
    kinds += [DeliveryStatus.NOT_FOUND] + [DeliveryStatus.SENT] * 3
    DeliveryFactory.create_for(burst, members, status=lambda i: kinds[i])
    page = root_client.get(page_url(burst, "retry"))
    assert page.context["form"].fields["statuses"].initial == ["connection_error", "failed"]
    html = page.content.decode()
    assert 'value="not_found"' not in html and "never retried" in html

    response = root_client.post(
        page_url(burst, "retry"), {"statuses": ["failed", "connection_error"]}, follow=True
    )
    assert any("4 deliveries" in m for m in messages_of(response))
    counts = dict(
        Delivery.objects.filter(burst=burst).order_by().values_list("status").annotate(n=Count("id"))
    )
    assert counts["pending"] == 4 and counts["other_error"] == 1 and counts["not_found"] == 1
    assert status_of(burst) == BurstStatus.SENDING


def test_not_found_is_never_retried(root_client, members):
    burst = BurstFactory(subject="Retry me", status=BurstStatus.SENT, recipients=members[:1])
    DeliveryFactory.create_for(burst, members[:1], status=DeliveryStatus.NOT_FOUND)
    root_client.post(page_url(burst, "retry"), {"statuses": ["not_found"]})
    assert Delivery.objects.get(burst=burst).status == DeliveryStatus.NOT_FOUND
    assert status_of(burst) == BurstStatus.SENT


def test_only_a_draft_or_scheduled_burst_can_be_deleted(root_client, sent_burst):
    draft = BurstFactory(subject="Scrap me")
    assert root_client.post(page_url(draft, "delete"), {"post": "yes"}).status_code == 302
    assert not EmailBurst.objects.filter(pk=draft.pk).exists()
    assert root_client.post(page_url(sent_burst, "delete"), {"post": "yes"}).status_code == 403
    assert EmailBurst.objects.filter(pk=sent_burst.pk).exists()
