"""The members admin's import pages (SPEC section 14, issue 13 point 4): the upload form
and its template CSV, the dry run (ignored columns, rejected rows with their reasons and
their CSV), "Confirm import" only when something would change, adding to a list, the
import of files over 5,000 rows in a huey task with its progress, and refusals that show
a message and never a trace."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from members import import_jobs
from members.importing import ACCEPTED_HEADERS, DATE_FORMAT_HELP, TEMPLATE_CSV
from members.models import ImportJob, ListMembership, MailingList, Member
from tests.admin.test_members_admin import confirm, figures, rejected_reasons, upload
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db

IMPORT = "/admin/members/member/import/"
TEMPLATE = "/admin/members/member/import/template.csv"
TRACES = re.compile(r"Traceback|Exception|Error:|File \"|/work/|/srv/|site-packages|\.py\b")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    return root


def refused_text(response) -> str:
    """The words of the refusal on the upload page, tags taken out."""
    region = re.search(r'id="import-refused">(.*?)</div>\s*</div>', response.content.decode(), re.S)
    return re.sub(r"<[^>]+>", " ", region.group(1)).strip() if region else ""


def inline_scripts(html: str) -> list[str]:
    """<script> tags that would run inline code (the admin's CSP forbids them)."""
    return [
        tag
        for tag in re.findall(r"<script\b[^>]*>", html)
        if "src=" not in tag and 'type="application/json"' not in tag
    ]


def stored_files(media_root: Path) -> list[str]:
    folder = media_root / "imports"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def page_text(response) -> str:
    return response.content.decode()


def people_csv(n: int, *, start: int = 0) -> str:
    rows = [f"person{i:05d}@example.test,Person,{i}" for i in range(start, start + n)]
    return "email,first_name,last_name\n" + "\n".join(rows) + "\n"


# --- the upload page --------------------------------------------------------------------------------


def test_the_upload_page_offers_the_template_the_lists_and_the_limit(root_client):
    MailingList.objects.create(name="Volunteers")
    html = page_text(root_client.get(IMPORT))
    assert 'id="import-upload-form"' in html and 'name="import_file"' in html
    assert TEMPLATE in html and "Download the template CSV" in html
    assert "Add the imported members to list" in html and "Volunteers" in html
    assert re.search(r"10\.0\s+MB", html) and "import_members" in html
    for header in ACCEPTED_HEADERS:
        assert header in html


def test_the_template_csv_downloads_with_the_accepted_headers(root_client):
    response = root_client.get(TEMPLATE)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="members-template.csv"' == response["Content-Disposition"]
    assert response.content.decode() == TEMPLATE_CSV
    header = next(csv.reader(io.StringIO(TEMPLATE_CSV)))
    assert "email" in header


def test_the_template_itself_imports_cleanly(root_client):
    preview = upload(root_client, TEMPLATE_CSV)
    new, updated, unchanged, invalid = figures(preview)
    assert new >= 1 and invalid == 0


def test_a_file_over_the_upload_limit_is_refused_before_it_is_stored(root_client, settings, media_root):
    settings.IMPORT_MAX_UPLOAD = 1000
    response = upload(root_client, people_csv(100))
    html = page_text(response)
    assert "bigger than 1000" in html and "python manage.py import_members FILE" in html
    assert stored_files(media_root) == [] and not ImportJob.objects.exists()


@pytest.mark.parametrize(
    "name, content",
    [
        ("picture.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
        ("members.xlsx", b"PK\x03\x04 this is not a workbook at all"),
        ("members.csv", b"\xff\xfe\x00\x00\x00junk\x00\x01\x02"),
        ("members.csv", b"first_name;last_name\nAda;Lovelace\n"),
    ],
)
def test_a_refused_file_shows_its_message_and_nothing_else(root_client, media_root, name, content):
    response = upload(root_client, content, name=name)
    assert response.status_code == 200 and response.redirect_chain == []
    html = page_text(response)
    assert refused_text(response) and not TRACES.search(refused_text(response))
    assert 'id="import-summary"' not in html and "Confirm import" not in html
    assert stored_files(media_root) == [] and not ImportJob.objects.exists()
    assert Member.objects.count() == 1


def test_an_empty_upload_is_refused_plainly(root_client):
    response = upload(root_client, b"")
    assert "The file is empty." in page_text(response) or 'id="import-refused"' in page_text(response)
    assert not ImportJob.objects.exists()


def test_a_file_without_an_email_column_lists_the_accepted_headers(root_client):
    response = upload(root_client, "Name,Phone\nAda,123\n")
    refused = refused_text(response)
    for header in ACCEPTED_HEADERS:
        assert header in refused
    assert not TRACES.search(refused)


# --- the preview ------------------------------------------------------------------------------------


def test_the_preview_names_the_ignored_columns(root_client):
    preview = upload(
        root_client, "Email Address,First Name,Phone,Favourite colour\nx@example.test,X,1,blue\n"
    )
    assert figures(preview) == (1, 0, 0, 0)
    ignored = re.search(r'id="import-ignored-columns">(.*?)</p>', page_text(preview), re.S).group(1)
    assert "Phone" in ignored and "Favourite colour" in ignored and "First Name" not in ignored


def test_a_repeated_email_is_rejected_naming_the_first_row(root_client):
    content = "email,first_name\nann@example.test,Ann\nbob@example.test,Bob\nANN@example.test,Annie\n"
    preview = upload(root_client, content)
    assert figures(preview) == (2, 0, 0, 1)
    assert "duplicate of row 2" in rejected_reasons(preview)[4]
    confirm(root_client, preview)
    assert Member.objects.get(email="ann@example.test").first_name == "Ann"  # not silently renamed


def test_a_bad_date_names_the_accepted_format(root_client):
    preview = upload(root_client, "email,birth_date\nd@example.test,2023-02-30\ne@example.test,soon\n")
    reasons = rejected_reasons(preview)
    assert DATE_FORMAT_HELP in reasons[2] and DATE_FORMAT_HELP in reasons[3]
    assert "exist" in reasons[2]  # 30 February: the date does not exist
    assert "could not be parsed" not in page_text(preview)


def test_a_staff_row_is_rejected_with_its_reason(root_client, staff_user):
    preview = upload(
        root_client, f"email,first_name\n{staff_user.email.upper()},Renamed\nz@example.test,Zed\n"
    )
    assert figures(preview) == (1, 0, 0, 1)
    assert "staff" in rejected_reasons(preview)[2]
    confirm(root_client, preview)
    staff_user.refresh_from_db()
    assert staff_user.first_name == "Sam"


def test_the_rejected_rows_are_shown_with_row_reason_and_values(root_client):
    preview = upload(root_client, "email,first_name,city\nnot-an-address,Nora,Oslo\n")
    html = page_text(preview)
    table = re.search(r'<table[^>]*id="import-invalid-rows".*?</table>', html, re.S).group(0)
    assert 'data-row="2"' in table and "Row 2" in table
    assert "not-an-address" in table and "Nora" in table and "Oslo" in table
    assert "Download the rejected rows (CSV)" in html


def test_the_rejected_rows_download_has_the_columns_the_row_and_the_reason(root_client):
    content = 'email,first_name,last_name\nok@example.test,Ok,Row\nnope,=HYPERLINK("http://x"),Bad\n'
    preview = upload(root_client, content)
    response = root_client.get(preview.context["rejected_url"])
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "members-rejected.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert len(rows) == 1
    assert {"email", "first_name", "last_name", "row", "reason"} <= set(rows[0])
    assert rows[0]["row"] == "3" and rows[0]["email"] == "nope" and rows[0]["reason"]
    # Opened in a spreadsheet, the cell is text, not a formula.
    assert rows[0]["first_name"] == '\'=HYPERLINK("http://x")'


def test_no_rejected_rows_no_download(root_client):
    preview = upload(root_client, "email\nfine@example.test\n")
    assert "Download the rejected rows" not in page_text(preview)
    assert root_client.get(preview.context["rejected_url"]).status_code == 404


def test_confirm_is_not_offered_when_nothing_would_change(root_client, member):
    preview = upload(root_client, "email,first_name,last_name\nada@example.test,Ada,Lovelace\n")
    assert figures(preview) == (0, 0, 1, 0)
    html = page_text(preview)
    assert "Confirm import" not in html and 'id="import-nothing-to-do"' in html
    assert "Nothing to import" in html
    # Posting the confirmation anyway changes nothing either.
    response = root_client.post(preview.context["confirm_url"], follow=True)
    assert "Nothing to import" in page_text(response)
    assert ImportJob.objects.get().status == ImportJob.Status.PREVIEWED


def test_adding_to_a_list_is_offered_and_adds_every_valid_rows_member(root_client, member):
    volunteers = MailingList.objects.create(name="Volunteers")
    content = "email,first_name\nada@example.test,Ada\nnew@example.test,New\nbroken,Row\n"
    preview = upload(root_client, content, mailing_list=volunteers)
    assert figures(preview) == (1, 0, 1, 1)
    assert "2 members will be added to the list “Volunteers”" in page_text(preview)
    response = confirm(root_client, preview)
    assert "2 members added to the list “Volunteers”" in page_text(response)
    on_list = set(
        ListMembership.objects.filter(mailing_list=volunteers).values_list("member__email", flat=True)
    )
    assert on_list == {"ada@example.test", "new@example.test"}


def test_a_list_makes_an_unchanged_file_worth_confirming(root_client, member):
    volunteers = MailingList.objects.create(name="Volunteers")
    preview = upload(root_client, "email,first_name\nada@example.test,Ada\n", mailing_list=volunteers)
    assert figures(preview) == (0, 0, 1, 0)
    assert "Confirm import" in page_text(preview)
    confirm(root_client, preview)
    assert ListMembership.objects.filter(mailing_list=volunteers, member=member).exists()


def test_a_list_the_members_are_all_on_already_changes_nothing(root_client, member):
    volunteers = MailingList.objects.create(name="Volunteers")
    ListMembership.objects.create(mailing_list=volunteers, member=member)
    preview = upload(root_client, "email,first_name\nada@example.test,Ada\n", mailing_list=volunteers)
    assert "Confirm import" not in page_text(preview)
    assert "all of them are on the list already" in page_text(preview)


# --- confirming -------------------------------------------------------------------------------------


def test_confirming_twice_imports_once_and_the_file_is_gone(root_client, media_root):
    preview = upload(root_client, people_csv(3))
    assert len(stored_files(media_root)) == 1  # kept between preview and import
    first = confirm(root_client, preview)
    again = confirm(root_client, preview)
    assert figures(first) == figures(again) == (3, 0, 0, 0)
    assert Member.objects.filter(email__startswith="person").count() == 3
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.DONE and job.finished_at is not None
    assert stored_files(media_root) == []  # the upload is deleted once imported


def test_the_summary_after_the_import_is_the_preview_s(root_client, member):
    content = (
        "email,first_name\nada@example.test,Augusta\nnew@example.test,New\nada@example.test,Twice\nbad,x\n"
    )
    preview = upload(root_client, content)
    response = confirm(root_client, preview)
    assert figures(response) == figures(preview) == (1, 1, 0, 2)
    assert rejected_reasons(response) == rejected_reasons(preview)
    assert "Import finished: 1 new, 1 updated, 0 unchanged, 2 invalid." in page_text(response)
    assert "Download the rejected rows (CSV)" in page_text(response)


def test_a_job_is_only_shown_to_its_uploader(root_client, editor_client):
    preview = upload(root_client, people_csv(2))
    urls = [preview.context[key] for key in ("job_url", "progress_url", "rejected_url")]
    for url in urls:
        assert editor_client.get(url).status_code == 404
    assert editor_client.post(preview.context["confirm_url"]).status_code == 404
    assert not Member.objects.filter(email__startswith="person").exists()


def test_an_unknown_token_is_not_found(root_client):
    assert root_client.get(f"{IMPORT}no-such-token/").status_code == 404
    assert root_client.get(f"{IMPORT}no-such-token/progress/").status_code == 404


def test_only_staff_who_may_add_and_change_members_import(db):
    viewer = StaffFactory(username="viewer", email="viewer@example.test", permissions__apps=["campaigns"])
    client = Client()
    client.force_login(viewer)
    for url in (IMPORT, TEMPLATE):
        assert client.get(url).status_code == 403
    data = {"import_file": SimpleUploadedFile("m.csv", b"email\nx@example.test\n")}
    assert client.post(IMPORT, data).status_code == 403
    assert not Member.objects.filter(email="x@example.test").exists()


def test_the_changelist_import_button_leads_to_the_import_page(root_client):
    html = page_text(root_client.get("/admin/members/member/"))
    assert f'href="{IMPORT}"' in html
    assert 'href="/admin/members/member/export/' in html  # the export stays


def test_the_old_import_export_confirmation_url_is_gone(root_client):
    assert root_client.post("/admin/members/member/process_import/").status_code in (301, 302, 404)


# --- files over 5,000 rows: a huey task with a progress bar ---------------------------------------------


def test_a_big_file_is_imported_by_a_task_with_its_progress(
    root_client, immediate_huey, django_capture_on_commit_callbacks, monkeypatch, media_root
):
    monkeypatch.setattr(import_jobs, "PROGRESS_EVERY", 0)
    written: list[tuple[int, int]] = []
    real_writer = import_jobs._progress_writer

    def recording_writer(job):
        write = real_writer(job)

        def record(done, total):
            write(done, total)
            written.append(
                tuple(ImportJob.objects.filter(pk=job.pk).values_list("rows_done", "rows_total")[0])
            )

        return record

    monkeypatch.setattr(import_jobs, "_progress_writer", recording_writer)
    preview = upload(root_client, people_csv(5_001))
    assert figures(preview) == (5_001, 0, 0, 0)
    assert "the import runs in the background" in page_text(preview)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = root_client.post(preview.context["confirm_url"])
    assert response.status_code == 302 and len(queued) == 1  # enqueued after the commit
    assert Member.objects.filter(email__startswith="person").count() == 5_001
    assert written and written[-1][0] <= 5_001 and all(total == 5_001 for _done, total in written)
    assert [done for done, _total in written] == sorted(done for done, _total in written)
    job = ImportJob.objects.get()
    assert (job.status, job.rows_done, job.rows_total) == (ImportJob.Status.DONE, 5_001, 5_001)
    page = root_client.get(preview.context["job_url"])
    assert "Import finished: 5,001 new, 0 updated, 0 unchanged, 0 invalid." in page_text(page)
    progress = root_client.get(preview.context["progress_url"]).json()
    assert progress == {"state": "done", "done": 5_001, "total": 5_001, "percent": 100, "finished": True}
    assert stored_files(media_root) == []


def test_while_a_big_import_waits_the_page_shows_the_bar_and_its_script(root_client, media_root):
    preview = upload(root_client, people_csv(5_001))
    response = root_client.post(preview.context["confirm_url"])  # queued; no worker runs it here
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.QUEUED
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, rows_done=2_000)
    html = page_text(root_client.get(preview.context["job_url"]))
    assert 'id="import-progress"' in html and f'data-progress-url="{preview.context["progress_url"]}"' in html
    assert 'id="import-progress-fill"' in html and "width: 39%" in html
    assert "2,000" in html and "5,001" in html
    assert "members/admin/import_progress.js" in html
    assert inline_scripts(html) == []
    assert "Confirm import" not in html
    progress = root_client.get(preview.context["progress_url"]).json()
    assert progress == {"state": "waiting", "done": 2_000, "total": 5_001, "percent": 39, "finished": False}


def test_an_import_no_worker_moves_is_reported_as_stopped(root_client):
    preview = upload(root_client, people_csv(5_001))
    root_client.post(preview.context["confirm_url"])
    ImportJob.objects.update(updated_at=timezone.now() - import_jobs.STALLED_AFTER - timedelta(seconds=1))
    html = page_text(root_client.get(preview.context["job_url"]))
    assert "stopped making progress" in html and 'id="import-progress"' not in html
    assert root_client.get(preview.context["progress_url"]).json()["finished"] is True


def test_a_failing_task_says_so_without_a_trace(
    root_client, immediate_huey, django_capture_on_commit_callbacks, monkeypatch
):
    preview = upload(root_client, people_csv(5_001))

    def broken(**kwargs):
        raise OSError("/var/lib/emailer/media/imports/abc.csv: input/output error")

    monkeypatch.setattr(import_jobs, "members_import", broken)
    with django_capture_on_commit_callbacks(execute=True):
        root_client.post(preview.context["confirm_url"])
    assert ImportJob.objects.get().status == ImportJob.Status.FAILED
    html = page_text(root_client.get(preview.context["job_url"]))
    failed = re.search(r'id="import-failed">(.*?)</div>\s*</div>', html, re.S).group(1)
    assert "unexpected error" in failed and "upload the same file again" in failed
    assert not TRACES.search(failed) and "OSError" not in html and "/var/lib" not in html


def test_a_replayed_task_imports_once(root_client, immediate_huey, django_capture_on_commit_callbacks):
    from members.tasks import import_job_run

    preview = upload(root_client, people_csv(5_001))
    with django_capture_on_commit_callbacks(execute=True):
        root_client.post(preview.context["confirm_url"])
    job = ImportJob.objects.get()
    import_job_run(job.pk)  # the queue delivers it again
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE and job.result["new"] == 5_001


# --- keeping ------------------------------------------------------------------------------------------


def test_jobs_and_their_files_are_deleted_after_a_day(root_client, media_root):
    old = upload(root_client, "email\nold@example.test\nbad\n")
    fresh = upload(root_client, "email\nfresh@example.test\n")
    assert len(stored_files(media_root)) == 3  # two uploads, one rejected-rows CSV
    ImportJob.objects.filter(token=old.context["job"].token).update(
        created_at=timezone.now() - timedelta(days=1, minutes=1)
    )
    assert import_jobs.import_jobs_expire() == 1
    assert list(ImportJob.objects.values_list("token", flat=True)) == [fresh.context["job"].token]
    assert stored_files(media_root) == [f"{fresh.context['job'].token}.csv"]


def test_a_stored_file_is_named_by_the_token_never_by_the_upload(root_client, media_root):
    preview = upload(root_client, "email\nx@example.test\n", name="../../etc/passwd.csv")
    job = preview.context["job"]
    assert job.filename == "passwd.csv"
    assert stored_files(media_root) == [f"{job.token}.csv"]
    assert len(job.token) >= 32


def test_a_progress_poll_reads_the_job_once(root_client, django_assert_num_queries):
    preview = upload(root_client, people_csv(5_001))
    root_client.post(preview.context["confirm_url"])
    root_client.get(preview.context["progress_url"])  # the session warmed up
    with django_assert_num_queries(3):  # the session, the user, the job
        assert root_client.get(preview.context["progress_url"]).json()["state"] == "waiting"
