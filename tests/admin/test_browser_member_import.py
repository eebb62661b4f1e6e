"""A member import in chromium, against a live server and a real `run_huey` consumer:
upload a file of 6,000 rows (two of them bad), see the preview with the rejected rows,
confirm, watch the progress bar the worker moves, and see the same summary at the end.
And the bar itself, step by step: it follows the progress written on the job without
reloading the page, then shows the summary once the import is over.
Screenshots: test-artifacts/import-*.png."""

from __future__ import annotations

import io

import pytest
from django.utils import timezone

from members import import_jobs
from members.models import ImportJob, MailingList, Member
from tests.admin.browser import login, screenshot
from tests.workers import huey_queue, start_consumer  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROWS = 6_000
BAD_LINES = {
    # line of the file (the header is line 1) -> the row written there
    1_001: "not-an-address,Bad,Address,",
    4_502: "member00002@example.test,Same,Again,",  # repeats line 3
}


def big_csv() -> str:
    lines = ["Email Address,First Name,Last Name,Phone"]
    for n in range(1, ROWS + 1):
        line = n + 1
        lines.append(BAD_LINES.get(line, f"member{n:05d}@example.test,Name{n},Family{n},555-{n:04d}"))
    return "\n".join(lines) + "\n"


def test_a_big_import_shows_its_progress_and_summary(
    page,
    live_server,
    superuser,
    settings,
    tmp_path,
    smtp_server,
    start_consumer,  # noqa: F811
):
    media = tmp_path / "media"
    settings.MEDIA_ROOT = str(media)
    start_consumer(sink=smtp_server, workers=1, MEDIA_ROOT=str(media))
    MailingList.objects.create(name="Newsletter")
    csv_path = tmp_path / "members.csv"
    csv_path.write_text(big_csv())

    login(page, "root", "root-pass-1234")
    page.goto("/admin/members/member/")
    with page.expect_navigation():
        page.click('a[href="/admin/members/member/import/"]')
    assert page.url.endswith("/admin/members/member/import/")
    assert "Download the template CSV" in page.locator("#import-help").inner_text()
    screenshot(page, "import-01-upload")

    # A file that cannot be imported: its message, and nothing else.
    refused_path = tmp_path / "contacts.csv"
    refused_path.write_text("Name,Phone\nAda,555-0100\n")
    page.set_input_files("input[name=import_file]", str(refused_path))
    with page.expect_navigation():
        page.click("#import-upload-form button[type=submit]")
    assert "email" in page.locator("#import-refused").inner_text().lower()
    assert page.locator("#import-summary").count() == 0
    screenshot(page, "import-00-refused", full_page=False)

    # --- the preview -----------------------------------------------------------------------------
    page.set_input_files("input[name=import_file]", str(csv_path))
    page.select_option("select[name=mailing_list]", label="Newsletter")
    with page.expect_navigation():
        page.click("#import-upload-form button[type=submit]")
    assert page.locator('[data-count="new"]').inner_text() == "5,998"
    assert page.locator('[data-count="invalid"]').inner_text() == "2"
    assert "“Phone”" in page.locator("#import-ignored-columns").inner_text()
    rejected = page.locator("#import-invalid-rows tr.invalid-row")
    assert [int(rejected.nth(i).get_attribute("data-row")) for i in range(rejected.count())] == sorted(
        BAD_LINES
    )
    assert "duplicate of row 3" in rejected.nth(1).inner_text()
    assert "runs in the background" in page.locator("#confirm-import-form").inner_text()
    assert not Member.objects.filter(email__startswith="member").exists()  # only a dry run so far
    screenshot(page, "import-02-preview")

    # --- confirm, and watch the bar ----------------------------------------------------------------
    answers: list[dict] = []

    def watch(route):
        # What the server told the page, read before the page's reload discards it.
        response = route.fetch()
        answers.append(response.json())
        route.fulfill(response=response)

    page.route("**/import/*/progress/", watch)
    with page.expect_navigation():
        page.click("#confirm-import-form button[type=submit]")
    page.locator("#import-progress").wait_for()
    assert page.locator("#import-progress-bar").is_visible()
    assert page.locator("#import-progress-total").inner_text() == "6,000"

    # The script reloads the page once the worker is done: the summary replaces the bar.
    page.locator("#import-done").wait_for(timeout=60_000)
    assert (
        "Import finished: 5,998 new, 0 updated, 0 unchanged, 2 invalid."
        in page.locator("#import-done").inner_text()
    )
    assert page.locator('[data-count="new"]').inner_text() == "5,998"
    assert page.locator("#import-invalid-rows tr.invalid-row").count() == 2
    assert page.locator("#import-rejected-download").is_visible()
    screenshot(page, "import-04-done")

    assert answers, "the page never asked for the progress"
    percents = [answer["percent"] for answer in answers]
    assert percents == sorted(percents) and answers[-1]["finished"] and percents[-1] == 100
    assert all(answer["total"] == ROWS for answer in answers)
    assert Member.objects.filter(email__startswith="member").count() == 5_998
    assert MailingList.objects.get(name="Newsletter").member_count == 5_998
    assert ImportJob.objects.get().status == ImportJob.Status.DONE
    assert page.js_errors == []


def fill_width(page) -> str:
    return page.locator("#import-progress-fill").evaluate("el => el.style.width")


def test_the_bar_follows_the_progress_written_on_the_job(page, live_server, superuser, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    job = import_jobs.import_job_preview(
        upload=io.BytesIO(big_csv().encode()), filename="big.csv", actor=superuser
    )
    # Confirmed, and a worker 2,400 rows in.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, rows_done=2_400)

    login(page, "root", "root-pass-1234")
    page.goto(f"/admin/members/member/import/{job.token}/")
    assert fill_width(page) == "40%"
    assert page.locator("#import-progress-text").inner_text() == "2,400 of 6,000 rows"
    assert page.locator("#import-progress-percent").inner_text() == "40 %"
    page.evaluate("() => { window.samePage = true; }")  # gone if the page reloads
    screenshot(page, "import-03-progress", full_page=False)

    # The worker writes its next step: the bar follows, on the same page.
    ImportJob.objects.filter(pk=job.pk).update(rows_done=4_800, updated_at=timezone.now())
    page.wait_for_function("() => document.getElementById('import-progress-fill').style.width === '80%'")
    assert page.locator("#import-progress-done").inner_text() == "4,800"
    assert page.locator("#import-progress-bar").get_attribute("aria-valuenow") == "80"
    assert page.evaluate("() => window.samePage") is True

    # The import ends (run here for real): the page reloads once and shows the summary.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.QUEUED)
    import_jobs.import_job_run(job_id=job.pk)
    page.locator("#import-done").wait_for(timeout=30_000)
    assert "5,998 new, 0 updated, 0 unchanged, 2 invalid" in page.locator("#import-done").inner_text()
    assert page.locator("#import-progress").count() == 0
    assert page.js_errors == []
