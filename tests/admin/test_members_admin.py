"""Members in the admin: list, filters, badges, bulk actions, delivery timeline,
CSV/XLSX import (preview, invalid rows left out, update by email, all or nothing)
and formula-escaped export."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import openpyxl
import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from campaigns.models import BurstStatus, DeliveryStatus
from members.models import Member
from members.resources import MemberResource, escape_formula, unescape_formula
from tests.factories import BurstFactory, DeliveryFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/members/member/"
IMPORT = "/admin/members/member/import/"
PROCESS = "/admin/members/member/process_import/"


def emails_in(response) -> set[str]:
    return {m.email for m in response.context["cl"].result_list}


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def cast(db) -> dict[str, Member]:
    now = timezone.now()
    people = {
        "staff": Member.objects.create_user("st", "staff@example.test", is_staff=True, first_name="Stella"),
        "verified": Member.objects.create_user(
            "ve", "verified@example.test", is_verified=True, last_name="Vane"
        ),
        "inactive": Member.objects.create_user("in", "inactive@example.test", is_active=False),
        "gone": Member.objects.create_user("go", "gone@example.test", unsubscribed_at=now),
        "old": Member.objects.create_user("ol", "old@example.test"),
    }
    Member.objects.filter(pk=people["old"].pk).update(date_joined=now - timedelta(days=400))
    return people


# --- list -----------------------------------------------------------------------------------------


def test_search_by_name_and_email(root_client, cast):
    assert emails_in(root_client.get(LIST, {"q": "stella"})) == {"staff@example.test"}
    assert emails_in(root_client.get(LIST, {"q": "vane"})) == {"verified@example.test"}
    assert emails_in(root_client.get(LIST, {"q": "gone@example"})) == {"gone@example.test"}


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"is_staff__exact": "1"}, {"staff@example.test", "root@example.test"}),
        ({"is_verified__exact": "1"}, {"verified@example.test"}),
        ({"is_active__exact": "0"}, {"inactive@example.test"}),
        ({"subscribed": "no"}, {"gone@example.test"}),
    ],
)
def test_filters(root_client, cast, params, expected):
    response = root_client.get(LIST, params)
    assert response.status_code == 200
    assert emails_in(response) == expected


def test_joined_date_range_includes_both_ends(root_client, cast):
    today = timezone.localdate()
    response = root_client.get(LIST, {"date_joined_from": str(today), "date_joined_to": str(today)})
    assert "old@example.test" not in emails_in(response)
    assert "staff@example.test" in emails_in(response)
    long_ago = today - timedelta(days=400)
    response = root_client.get(LIST, {"date_joined_from": str(long_ago), "date_joined_to": str(long_ago)})
    assert emails_in(response) == {"old@example.test"}


def test_status_badges(root_client, cast):
    html = root_client.get(LIST).content.decode()
    for word in ("Subscribed", "Unsubscribed", "Verified", "Unverified", "Staff", "Inactive", "Superuser"):
        assert re.search(rf">\s*{word}\s*</span>", html), word


# --- bulk actions -------------------------------------------------------------------------------------


def run_action(client, action: str, members) -> object:
    return client.post(
        LIST, {"action": action, "_selected_action": [m.pk for m in members], "index": 0}, follow=True
    )


def test_mark_verified_unsubscribe_resubscribe(root_client, cast):
    targets = [cast["staff"], cast["old"], cast["verified"]]
    response = run_action(root_client, "mark_verified", targets)
    assert "2 members marked verified." in messages_of(response)
    assert Member.objects.filter(pk__in=[m.pk for m in targets], is_verified=True).count() == 3

    response = run_action(root_client, "unsubscribe", [cast["old"], cast["gone"]])
    assert "1 member unsubscribed." in messages_of(response)
    assert Member.objects.get(pk=cast["old"].pk).unsubscribed_at is not None
    gone_at = cast["gone"].unsubscribed_at
    assert Member.objects.get(pk=cast["gone"].pk).unsubscribed_at == gone_at  # untouched

    response = run_action(root_client, "resubscribe", [cast["old"], cast["gone"], cast["staff"]])
    assert "2 members resubscribed." in messages_of(response)
    assert not Member.objects.filter(pk__in=[cast["old"].pk, cast["gone"].pk], unsubscribed_at__isnull=False)


# --- member page: delivery timeline -------------------------------------------------------------------


def test_delivery_timeline(root_client, member):
    first = BurstFactory(subject="January letter", status=BurstStatus.SENT)
    second = BurstFactory(subject="February letter", status=BurstStatus.SENT)
    DeliveryFactory(burst=first, member=member, status=DeliveryStatus.SENT)
    DeliveryFactory(
        burst=second,
        member=member,
        status=DeliveryStatus.NOT_FOUND,
        error_message="550 5.1.1 User unknown (at RCPT)",
    )
    html = root_client.get(f"{LIST}{member.pk}/change/").content.decode()
    timeline = html[html.index('id="delivery-timeline"') :]
    assert timeline.index("February letter") < timeline.index("January letter")  # newest first
    assert "550 5.1.1 User unknown" in timeline
    assert "Not found" in timeline and "Sent" in timeline
    assert f"/admin/campaigns/delivery/?member__id__exact={member.pk}" in timeline


def test_empty_timeline(root_client, member):
    html = root_client.get(f"{LIST}{member.pk}/change/").content.decode()
    assert "No burst has been sent to this member yet." in html


# --- import -------------------------------------------------------------------------------------------


def upload(client, content: bytes | str, *, name: str = "members.csv", fmt: int = 0):
    data = content.encode() if isinstance(content, str) else content
    return client.post(IMPORT, {"format": fmt, "import_file": SimpleUploadedFile(name, data)})


def confirm(client, preview):
    form = preview.context["confirm_form"]
    return client.post(PROCESS, {k: v for k, v in form.initial.items() if v is not None}, follow=True)


CSV_WITH_BAD_ROWS = """email,first_name,last_name,birth_date,is_verified
anna@example.test,Anna,A,1990-01-02,yes
not-an-email,Bad,Email,,
carl@example.test,Carl,C,1990-13-45,no
dora@example.test,Dora,D,,maybe
emil@example.test,Emil,E,,1
"""


def test_preview_lists_invalid_rows_and_confirm_imports_the_rest(root_client):
    preview = upload(root_client, CSV_WITH_BAD_ROWS)
    assert preview.status_code == 200
    summary = preview.context["import_summary"]
    assert (summary.new, summary.updated, summary.invalid, summary.total) == (2, 0, 3, 5)
    reasons = {row.number: row.reason for row in summary.invalid_rows}
    assert set(reasons) == {2, 3, 4}
    assert "email" in reasons[2] and "valid email" in reasons[2]
    assert "birth_date" in reasons[3]
    assert "is_verified" in reasons[4] and "maybe" in reasons[4]
    assert "username" not in " ".join(reasons.values())  # no knock-on error
    html = preview.content.decode()
    assert 'id="import-invalid-rows"' in html and "Row 2" in html and "Confirm import" in html
    assert Member.objects.count() == 1  # a dry run: only root

    response = confirm(root_client, preview)
    assert response.status_code == 200
    assert set(Member.objects.values_list("email", flat=True)) == {
        "root@example.test",
        "anna@example.test",
        "emil@example.test",
    }
    text = " ".join(messages_of(response))
    assert "2 new" in text and "3 invalid rows were left out" in text
    anna = Member.objects.get(email="anna@example.test")
    assert anna.is_verified and str(anna.birth_date) == "1990-01-02"
    assert anna.username == "anna@example.test" and not anna.has_usable_password()


def test_existing_members_are_matched_by_email_ignoring_case(root_client, member):
    content = "Email,First name,is_staff\nADA@Example.TEST,Augusta,yes\nnew.one@example.test,New,yes\n"
    preview = upload(root_client, content)
    summary = preview.context["import_summary"]
    assert (summary.new, summary.updated, summary.invalid) == (1, 1, 0)
    confirm(root_client, preview)
    member.refresh_from_db()
    assert member.first_name == "Augusta" and member.username == "ada" and member.last_name == "Lovelace"
    assert Member.objects.filter(email__iexact="ada@example.test").count() == 1
    # is_staff is export-only: an import never grants admin access.
    assert not Member.objects.filter(is_staff=True).exclude(username="root").exists()


def test_unchanged_rows_are_skipped(root_client, member):
    preview = upload(root_client, "email,first_name\nada@example.test,Ada\n")
    summary = preview.context["import_summary"]
    assert (summary.new, summary.updated, summary.skipped) == (0, 0, 1)


def test_a_file_with_only_invalid_rows_offers_no_confirmation(root_client):
    preview = upload(root_client, "email\nnope\n")
    assert "confirm_form" not in preview.context or preview.context["confirm_form"] is None
    assert preview.context["import_summary"].invalid == 1


def test_xlsx_import(root_client):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["email", "first_name", "is_verified"])
    sheet.append(["xena@example.test", "Xena", 1])
    sheet.append(["bad address", "Bad", 0])
    buffer = io.BytesIO()
    book.save(buffer)
    preview = upload(root_client, buffer.getvalue(), name="members.xlsx", fmt=1)
    summary = preview.context["import_summary"]
    assert (summary.new, summary.invalid) == (1, 1)
    confirm(root_client, preview)
    assert Member.objects.get(email="xena@example.test").is_verified


def test_an_unexpected_failure_imports_nothing(root_client, monkeypatch):
    rows = "\n".join(f"person{i}@example.test,P{i}" for i in range(6))
    preview = upload(root_client, "email,first_name\n" + rows + "\n")
    assert preview.context["import_summary"].new == 6

    original = Member.save

    def flaky_save(self, *args, **kwargs):
        if self.email == "person4@example.test":
            raise RuntimeError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Member, "save", flaky_save)
    response = confirm(root_client, preview)
    text = " ".join(messages_of(response))
    assert "nothing was imported" in text and "disk full" in text
    assert not Member.objects.filter(email__startswith="person").exists()


def test_import_needs_add_permission(editor_client, editor):
    from django.contrib.auth.models import Permission

    editor.user_permissions.remove(Permission.objects.get(codename="add_member"))
    assert editor_client.get(IMPORT).status_code == 403


# --- export -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_escaping(prefix):
    assert escape_formula(prefix + "1+2") == "'" + prefix + "1+2"
    assert unescape_formula(escape_formula(prefix + "1+2")) == prefix + "1+2"
    assert escape_formula("plain") == "plain"
    assert escape_formula(5) == 5


def test_export_csv_escapes_formulas(root_client):
    Member.objects.create_user(
        "evil",
        "evil@example.test",
        first_name='=HYPERLINK("http://x","y")',
        last_name="+1",
        middle_name="@sum",
    )
    response = root_client.post("/admin/members/member/export/", {"format": 0, "resource": 0})
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    evil = next(r for r in rows if r["email"] == "evil@example.test")
    assert evil["first_name"] == '\'=HYPERLINK("http://x","y")'
    assert evil["last_name"] == "'+1"
    assert evil["middle_name"] == "'@sum"
    assert evil["subscribed"] == "yes"


def test_export_xlsx_escapes_formulas(member):
    member.first_name = "=1+1"
    member.save()
    from import_export.formats.base_formats import XLSX

    data = XLSX().export_data(MemberResource().export())
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    header = [c.value for c in sheet[1]]
    values = [c.value for c in sheet[2]]
    row = dict(zip(header, values, strict=True))
    assert row["first_name"] == "'=1+1"
    assert sheet.cell(row=2, column=header.index("first_name") + 1).data_type == "s"  # text, not a formula


def test_a_file_without_an_email_column_is_refused(root_client):
    preview = upload(root_client, "name,first_name\nx,y\n")
    assert preview.status_code == 200
    assert not preview.context.get("confirm_form")
    assert "email" in preview.content.decode()
    assert Member.objects.count() == 1


def test_the_record_dates_of_a_member_are_shown_not_edited(root_client, member):
    """last_login, date_joined and unsubscribed_at are set by what happens, and a typed
    date beyond year 9999 in UTC could not even be stored."""
    page = root_client.get(f"/admin/members/member/{member.pk}/change/").content.decode()
    for name in ("date_joined", "last_login", "unsubscribed_at"):
        assert f'name="{name}' not in page
    joined = member.date_joined
    response = root_client.post(
        f"/admin/members/member/{member.pk}/change/",
        {
            "username": member.username,
            "email": member.email,
            "first_name": member.first_name,
            "last_name": member.last_name,
            "is_active": "on",
            "date_joined_0": "9999-12-31",
            "date_joined_1": "23:30:00",
        },
    )
    assert response.status_code in (200, 302)
    member.refresh_from_db()
    assert member.date_joined == joined
