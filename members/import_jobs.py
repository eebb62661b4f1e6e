"""Member imports started in the admin (SPEC section 14): the uploaded file kept between
its preview and its import, the import itself (in the request for small files, in a huey
task with its progress written down for bigger ones), and their reports.

The rows are read and written by the one validator, `members.importing.members_import`,
which the `import_members` command uses too. What this module adds is the keeping:

- The upload is stored under a name made of a random token (`imports/<token>.csv`): no
  name or path from the form is ever used to find a file. The token is the job's key in
  the admin's URLs, and a job is only ever shown to the staff user who uploaded it.
- The preview is a dry run; confirming imports the stored file. A job is claimed by a
  conditional UPDATE before it runs, so a double click or a replayed task imports once.
- A small import (the request's) runs in one transaction: all or nothing. A big one runs
  in the validator's batches, so the senders are never blocked for the whole file; should
  it stop midway, importing the same file again finishes it (the rows already imported
  count as unchanged).
- The rejected rows of the last run are kept as a CSV (`imports/<token>-rejected.csv`)
  for download. Jobs and their files are deleted a day after the upload.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from common.errors import InvalidInput
from members.importing import ImportReport, escape_formula, members_import
from members.models import ImportJob, MailingList, Member

logger = logging.getLogger(__name__)

# Files with more rows than this are imported by a huey task, with a progress bar.
BACKGROUND_ROWS = 5_000
# How long a job and its files are kept after the upload.
KEEP_FOR = timedelta(days=1)
# Rejected rows kept on the job for the page; the CSV download has all of them.
REJECTED_SHOWN = 200
# Progress is written at most this often (seconds): one UPDATE per batch would do, but
# the validator decides how often it calls back.
PROGRESS_EVERY = 0.5
# A running import that wrote no progress for this long is reported as stopped.
STALLED_AFTER = timedelta(minutes=10)
UPLOAD_SUFFIXES = (".csv", ".xlsx", ".txt", ".tsv")

Report = dict[str, Any]


def _upload_name(token: str, filename: str) -> str:
    suffix = PurePath(filename).suffix.lower()
    return f"imports/{token}{suffix if suffix in UPLOAD_SUFFIXES else '.upload'}"


def _rejected_name(token: str) -> str:
    return f"imports/{token}-rejected.csv"


def _stored_upload(job: ImportJob) -> str:
    return _upload_name(job.token, job.filename)


def _report_data(report: ImportReport) -> Report:
    """The report as the job keeps it (JSON), with the words of the summary line."""
    return {
        "new": report.new,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "invalid": report.invalid,
        "rows": report.new + report.updated + report.unchanged + report.invalid,
        "ignored_columns": [str(c) for c in report.ignored_columns],
        "columns": [str(c) for c in report.columns],
        "rejected": [
            {"row": r.row, "reason": r.reason, "values": {str(k): str(v) for k, v in r.values.items()}}
            for r in report.rejected[:REJECTED_SHOWN]
        ],
        "refused": report.refused,
        "list_additions": report.added_to_list,  # members not on the chosen list yet
        "summary": report.summary(),
    }


@contextlib.contextmanager
def _rejected_rows_kept(token: str) -> Iterator[IO[str]]:
    """A text stream for the validator's rejected rows, stored as the job's rejected-rows
    CSV once the run is over (replacing the last run's; nothing when no row was rejected)."""
    name = _rejected_name(token)
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as written:
        yield written
        _delete(name)
        written.seek(0)
        if not written.read(1):
            return
        written.seek(0)
        with tempfile.TemporaryFile() as out:
            text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="")  # a BOM: Excel reads UTF-8
            # The cells are the file's own: a spreadsheet opening the download must not run
            # them as formulas (the member export's leading quote).
            csv.writer(text).writerows([escape_formula(cell) for cell in row] for row in csv.reader(written))
            text.flush()
            out.seek(0)
            default_storage.save(name, File(out, name=name))
            text.detach()


def _delete(*names: str) -> None:
    for name in names:
        with contextlib.suppress(OSError):
            default_storage.delete(name)


def import_job_preview(
    *, upload: IO[bytes], filename: str, actor: Member, list_id: int | None = None
) -> ImportJob:
    """Store the upload and dry-run it. Raises InvalidInput (and keeps nothing) when the
    file as a whole cannot be imported, with the validator's message for people."""
    if list_id is not None and not MailingList.objects.filter(pk=list_id).exists():
        raise InvalidInput("That mailing list no longer exists: choose another one.", field="mailing_list")
    token = secrets.token_urlsafe(24)
    filename = PurePath(filename or "upload").name[-255:] or "upload"
    stored = default_storage.save(_upload_name(token, filename), File(upload, name=filename))
    try:
        with _rejected_rows_kept(token) as rejected, default_storage.open(stored, "rb") as source:
            report = members_import(
                source=source,
                filename=filename,
                dry_run=True,
                list_id=list_id,
                errors_out=rejected,
                actor=actor,
            )
    except Exception:
        _delete(stored, _rejected_name(token))
        raise
    if report.refused:
        _delete(stored, _rejected_name(token))
        raise InvalidInput(report.refused, field="import_file")
    if not report.invalid:
        _delete(_rejected_name(token))
    data = _report_data(report)
    return ImportJob.objects.create(
        token=token,
        created_by=actor,
        filename=filename,
        mailing_list_id=list_id,
        rows_total=data["rows"],
        preview=data,
    )


def import_job_get(*, token: str, actor: Member) -> ImportJob | None:
    """The actor's own job (a token of somebody else's reads as no job at all)."""
    return ImportJob.objects.select_related("mailing_list").filter(token=token, created_by=actor).first()


def import_job_would_change(*, job: ImportJob) -> bool:
    """Whether confirming would change anything: members to add or update, or members
    to put on the chosen list (the valid rows' members, unless all are on it already)."""
    preview = job.preview
    if preview.get("new", 0) + preview.get("updated", 0):
        return True
    return job.mailing_list_id is not None and preview.get("list_additions", 0) > 0


def import_job_in_background(*, job: ImportJob) -> bool:
    return job.rows_total > BACKGROUND_ROWS


def import_job_confirm(*, job: ImportJob) -> bool:
    """Queue a previewed job for its import; False when it was already confirmed (a
    double click) or would change nothing."""
    if not import_job_would_change(job=job):
        return False
    claimed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.PREVIEWED).update(
        status=ImportJob.Status.QUEUED, updated_at=timezone.now()
    )
    job.refresh_from_db()
    return bool(claimed)


def _progress_writer(job: ImportJob) -> Callable[[int, int | None], None]:
    """The validator's progress callback: rows done (and the total, when it knows it)
    written on the job for the page's polling, at most every PROGRESS_EVERY seconds."""
    last = 0.0

    def write(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_EVERY:
            return
        last = now
        ImportJob.objects.filter(pk=job.pk).update(
            rows_done=done, rows_total=total or job.rows_total, updated_at=timezone.now()
        )

    return write


def import_job_run(*, job_id: int, whole: bool = False) -> ImportJob | None:
    """Import a confirmed job's file. `whole`: in one transaction (the request's small
    imports); otherwise in the validator's batches, with progress written down."""
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, rows_done=0, updated_at=timezone.now()
    )
    job = ImportJob.objects.select_related("created_by").filter(pk=job_id).first()
    if not claimed or job is None:
        return job  # already run, running, or gone
    stored = _stored_upload(job)
    try:
        with (
            _rejected_rows_kept(job.token) as rejected,
            default_storage.open(stored, "rb") as source,
            transaction.atomic() if whole else contextlib.nullcontext(),
        ):
            report = members_import(
                source=source,
                filename=job.filename,
                list_id=job.mailing_list_id,
                errors_out=rejected,
                progress=None if whole else _progress_writer(job),
                actor=job.created_by,
            )
    except Exception:
        # Logged for the operators; the page only says that it stopped.
        logger.exception("member import %s stopped", job.pk)
        _delete(_rejected_name(job.token))
        done = ImportJob.objects.filter(pk=job.pk).values_list("rows_done", flat=True).first() or 0
        result: Report = {"failed": True, "rows_done": 0 if whole else done}
        status = ImportJob.Status.FAILED
    else:
        result = _report_data(report)
        status = ImportJob.Status.FAILED if report.refused else ImportJob.Status.DONE
        done = result["rows"]
        if not report.invalid:
            _delete(_rejected_name(job.token))
    _delete(stored)
    ImportJob.objects.filter(pk=job.pk).update(
        status=status, result=result, rows_done=done, finished_at=timezone.now(), updated_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def import_job_stalled(*, job: ImportJob) -> bool:
    """A queued or running import nobody has moved for a while (a worker killed, or no
    worker running): the page stops waiting and says so."""
    waiting = job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING)
    return waiting and timezone.now() - job.updated_at > STALLED_AFTER


def import_job_rejected_csv(*, job: ImportJob) -> IO[bytes] | None:
    name = _rejected_name(job.token)
    return default_storage.open(name, "rb") if default_storage.exists(name) else None


def import_jobs_expire(*, now: datetime | None = None) -> int:
    """Delete the jobs uploaded more than KEEP_FOR ago and their files (a running one
    only once it has written no progress for that long either)."""
    cutoff = (now or timezone.now()) - KEEP_FOR
    expired = list(
        ImportJob.objects.filter(created_at__lt=cutoff)
        .exclude(status=ImportJob.Status.RUNNING, updated_at__gte=cutoff)
        .values_list("pk", "token", "filename")
    )
    for _pk, token, filename in expired:
        _delete(_upload_name(token, filename), _rejected_name(token))
    ImportJob.objects.filter(pk__in=[pk for pk, _token, _filename in expired]).delete()
    return len(expired)
