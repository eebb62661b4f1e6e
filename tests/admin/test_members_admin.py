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
from members.importing import DATE_FORMAT_HELP
from members.models import Member
from members.resources import MemberResource, escape_formula, unescape_formula
from tests.factories import BurstFactory, DeliveryFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/members/member/"
IMPORT = "/admin/members/member/import/"


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
# The pages of members.admin.import_views on the one validator (members.importing); the
# import's own pages, downloads and background path: tests/admin/test_member_import_admin.py.


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Uploads kept between preview and import go to a folder of the test's own."""
    settings.MEDIA_ROOT = str(tmp_path / "media")


def upload(client, content: bytes | str, *, name: str = "members.csv", mailing_list=None, **_ignored):
    """Upload a file and follow to its preview (or the upload page again, when refused)."""
    data = content.encode() if isinstance(content, str) else content
    form = {"import_file": SimpleUploadedFile(name, data)}
    if mailing_list is not None:
        form["mailing_list"] = mailing_list.pk
    return client.post(IMPORT, form, follow=True)


def confirm(client, preview):
    return client.post(preview.context["confirm_url"], follow=True)


def report_of(response) -> dict:
    return response.context["report"]


def figures(response) -> tuple[int, int, int, int]:
    report = report_of(response)
    return (report["new"], report["updated"], report["unchanged"], report["invalid"])


def rejected_reasons(response) -> dict[int, str]:
    """Rejected rows by line of the file (the header is line 1)."""
    return {row["row"]: row["reason"] for row in report_of(response)["rejected"]}


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
    assert figures(preview) == (2, 0, 0, 3)
    reasons = rejected_reasons(preview)
    assert set(reasons) == {3, 4, 5}
    assert "email" in reasons[3].lower()
    assert DATE_FORMAT_HELP in reasons[4]
    assert "maybe" in reasons[5]
    html = preview.content.decode()
    assert 'id="import-invalid-rows"' in html and "Row 3" in html and "Confirm import" in html
    assert Member.objects.count() == 1  # a dry run: only root

    response = confirm(root_client, preview)
    assert response.status_code == 200
    assert set(Member.objects.values_list("email", flat=True)) == {
        "root@example.test",
        "anna@example.test",
        "emil@example.test",
    }
    assert figures(response) == (2, 0, 0, 3)
    assert "Import finished: 2 new, 0 updated, 0 unchanged, 3 invalid." in response.content.decode()
    anna = Member.objects.get(email="anna@example.test")
    assert anna.is_verified and str(anna.birth_date) == "1990-01-02"
    assert not anna.has_usable_password()


def test_existing_members_are_matched_by_email_ignoring_case(root_client, member):
    content = "Email,First name,is_staff\nADA@Example.TEST,Augusta,yes\nnew.one@example.test,New,yes\n"
    preview = upload(root_client, content)
    assert figures(preview) == (1, 1, 0, 0)
    confirm(root_client, preview)
    member.refresh_from_db()
    assert member.first_name == "Augusta" and member.username == "ada" and member.last_name == "Lovelace"
    assert Member.objects.filter(email__iexact="ada@example.test").count() == 1
    # An import never grants admin access, whatever its columns say.
    assert not Member.objects.filter(is_staff=True).exclude(username="root").exists()


def test_unchanged_rows_are_skipped(root_client, member):
    preview = upload(root_client, "email,first_name\nada@example.test,Ada\n")
    assert figures(preview) == (0, 0, 1, 0)


def test_a_file_with_only_invalid_rows_offers_no_confirmation(root_client):
    preview = upload(root_client, "email\nnope\n")
    assert figures(preview) == (0, 0, 0, 1)
    assert not preview.context["can_confirm"]
    html = preview.content.decode()
    assert "Confirm import" not in html and "every row was rejected" in html


def test_xlsx_import(root_client):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["email", "first_name", "is_verified"])
    sheet.append(["xena@example.test", "Xena", 1])
    sheet.append(["bad address", "Bad", 0])
    buffer = io.BytesIO()
    book.save(buffer)
    preview = upload(root_client, buffer.getvalue(), name="members.xlsx")
    assert figures(preview) == (1, 0, 0, 1)
    confirm(root_client, preview)
    assert Member.objects.get(email="xena@example.test").is_verified


def test_formulas_are_stored_as_text_without_the_export_quote(root_client):
    preview = upload(root_client, "email,first_name,last_name\nf@example.test,'=1+2,@sum\n")
    confirm(root_client, preview)
    imported = Member.objects.get(email="f@example.test")
    assert imported.first_name == "=1+2"  # the export's leading quote undone
    assert imported.last_name == "@sum"


def test_an_unexpected_failure_imports_nothing_and_shows_no_trace(root_client, monkeypatch):
    from members import import_jobs

    rows = "\n".join(f"person{i}@example.test,P{i}" for i in range(6))
    preview = upload(root_client, "email,first_name\n" + rows + "\n")
    assert figures(preview) == (6, 0, 0, 0)

    real_import = import_jobs.members_import

    def import_then_fail(**kwargs):
        real_import(**kwargs)  # every row written...
        raise RuntimeError("disk full at /srv/emailer/secret.py")  # ...then a failure

    monkeypatch.setattr(import_jobs, "members_import", import_then_fail)
    response = confirm(root_client, preview)
    html = response.content.decode()
    assert "unexpected error" in html and "Nothing was imported" in html
    assert "disk full" not in html and "RuntimeError" not in html and "/srv/" not in html
    assert not Member.objects.filter(email__startswith="person").exists()


def test_import_needs_add_permission(editor_client, editor):
    from django.contrib.auth.models import Permission

    editor.user_permissions.remove(Permission.objects.get(codename="add_member"))
    assert editor_client.get(IMPORT).status_code == 403


def test_a_file_without_an_email_column_is_refused(root_client):
    response = upload(root_client, "name,first_name\nx,y\n")
    assert response.status_code == 200
    assert response.redirect_chain == []  # the upload page again, with the message
    html = response.content.decode()
    assert 'id="import-refused"' in html and "email" in html
    assert "confirm_url" not in response.context
    assert Member.objects.count() == 1


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
