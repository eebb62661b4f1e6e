"""The members admin's "Import" pages (SPEC section 14), in place of django-import-export's
import (its export stays): upload a CSV or XLSX file, see the dry run (new, updated,
unchanged and invalid rows, the ignored columns, each rejected row with its reason and a
CSV of them to download), confirm, and see the same summary for the import. Files of
more than 5,000 rows are imported by a huey task while the page shows a progress bar
(`members/admin/import_progress.js` polls the progress view; no inline script).

The views are thin: the one validator (`members.importing`) reads the rows,
`members.import_jobs` keeps the file between preview and import. A refused file shows
only its message (for example the accepted headers): never a traceback, an exception's
name or a server path. Only staff who may add and change members import, and a job is
only ever shown to the staff user who uploaded it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from unfold.widgets import UnfoldAdminFileFieldWidget, UnfoldAdminSelectWidget

from common.errors import ServiceError
from members import import_jobs, selectors, tasks
from members.importing import ACCEPTED_HEADERS, DATE_FORMAT_HELP, TEMPLATE_CSV
from members.models import ImportJob, MailingList

logger = logging.getLogger(__name__)

UNREADABLE = (
    "The file could not be read, and nothing was imported. Save it as a CSV (UTF-8) or an "
    "Excel workbook (XLSX) and upload it again."
)


def too_big_message() -> str:
    return (
        f"The file is bigger than {filesizeformat(settings.IMPORT_MAX_UPLOAD)}, the limit of an "
        "upload here. Nothing was imported. Import it on the server instead, with "
        "“python manage.py import_members FILE” (it has no size limit)."
    )


class ImportUploadForm(forms.Form):
    import_file = forms.FileField(
        label="File (CSV or XLSX)",
        widget=UnfoldAdminFileFieldWidget,
        error_messages={"required": "Choose a CSV or XLSX file.", "empty": "The file is empty."},
    )
    mailing_list = forms.ModelChoiceField(
        queryset=MailingList.objects.none(),
        required=False,
        label="Add the imported members to list",
        empty_label="No list",
        help_text="The members of every valid row (new, updated or unchanged) are added to it.",
        widget=UnfoldAdminSelectWidget,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["mailing_list"].queryset = selectors.mailing_lists()  # type: ignore[attr-defined]

    def clean_import_file(self) -> Any:
        upload = self.cleaned_data["import_file"]
        if upload.size > settings.IMPORT_MAX_UPLOAD:
            raise forms.ValidationError(too_big_message())
        return upload


# --- the pages ----------------------------------------------------------------------------------


def _urls(job: ImportJob | None = None) -> dict[str, str]:
    urls = {
        "upload_url": reverse("admin:members_member_import"),
        "template_url": reverse("admin:members_member_import_template"),
        "changelist_url": reverse("admin:members_member_changelist"),
    }
    if job is not None:
        for key, name in (
            ("job_url", "import_job"),
            ("confirm_url", "import_confirm"),
            ("progress_url", "import_progress"),
            ("rejected_url", "import_rejected"),
        ):
            urls[key] = reverse(f"admin:members_member_{name}", args=[job.token])
        if job.mailing_list_id:
            urls["list_members_url"] = f"{urls['changelist_url']}?mailing_list={job.mailing_list_id}"
    return urls


def _page(model_admin: ModelAdmin, request: HttpRequest, template: str, **context: Any) -> TemplateResponse:
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(
        request,
        template,
        {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta, **context},
    )


def _allowed(model_admin: ModelAdmin, request: HttpRequest) -> None:
    if not model_admin.has_import_permission(request):  # type: ignore[attr-defined]
        raise PermissionDenied


def _job(request: HttpRequest, token: str) -> ImportJob:
    job = import_jobs.import_job_get(token=token, actor=request.user)  # type: ignore[arg-type]
    if job is None:
        raise Http404("No such import (imports are kept for a day).")
    return job


def upload_view(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse:
    _allowed(model_admin, request)
    refused = ""
    if request.method != "POST":
        form = ImportUploadForm()
    else:
        form = ImportUploadForm(request.POST, request.FILES)
        if form.is_valid():
            upload, chosen = form.cleaned_data["import_file"], form.cleaned_data["mailing_list"]
            try:
                job = import_jobs.import_job_preview(
                    upload=upload,
                    filename=upload.name,
                    actor=request.user,  # type: ignore[arg-type]
                    list_id=chosen.pk if chosen else None,
                )
            except ServiceError as exc:
                refused = exc.message
            except Exception:  # never a traceback on the page; the log has it
                logger.exception("member import preview failed")
                refused = UNREADABLE
            else:
                return HttpResponseRedirect(_urls(job)["job_url"])
    return _page(
        model_admin,
        request,
        "members/admin/import_upload.html",
        title="Import members",
        form=form,
        refused=refused,
        accepted_headers=ACCEPTED_HEADERS,
        date_format=DATE_FORMAT_HELP,
        max_upload=settings.IMPORT_MAX_UPLOAD,
        **_urls(),
    )


def template_view(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse:
    _allowed(model_admin, request)
    response = HttpResponse(TEMPLATE_CSV, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="members-template.csv"'
    return response


def _rejected_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The rejected rows for the table: their non-empty cells as (column, value) pairs,
    so that no column name is ever read as a template attribute."""
    return [
        {
            "row": rejected["row"],
            "reason": rejected["reason"],
            "cells": [(column, value) for column, value in rejected["values"].items() if value != ""],
        }
        for rejected in report.get("rejected", [])
    ]


TITLES = {
    "preview": "Import members",
    "waiting": "Importing members",
    "done": "Members imported",
    "failed": "The import stopped",
    "stalled": "The import stopped",
}


def _state(job: ImportJob) -> str:
    if job.status == ImportJob.Status.PREVIEWED:
        return "preview"
    if job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
        return "stalled" if import_jobs.import_job_stalled(job=job) else "waiting"
    return "done" if job.status == ImportJob.Status.DONE else "failed"


def _percent(job: ImportJob) -> int:
    if job.status == ImportJob.Status.DONE:
        return 100
    return min(100, job.rows_done * 100 // job.rows_total) if job.rows_total else 0


def _n(value: int, one: str, many: str) -> str:
    return f"{value:,} {one if value == 1 else many}"


FIGURES = (
    ("new", "New", "text-green-700 dark:text-green-400"),
    ("updated", "Updated", "text-blue-700 dark:text-blue-400"),
    ("unchanged", "Unchanged (skipped)", "text-font-important-light dark:text-font-important-dark"),
    ("invalid", "Invalid (left out)", "text-red-700 dark:text-red-400"),
)


def _figures(report: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"key": key, "label": label, "value": f"{report.get(key, 0):,}", "colour": colour}
        for key, label, colour in FIGURES
    ]


def _confirm_line(report: dict[str, Any]) -> str:
    new, updated = report.get("new", 0), report.get("updated", 0)
    if new and updated:
        return f"{_n(new, 'new member', 'new members')} will be added and {updated:,} updated."
    if new:
        return f"{_n(new, 'new member', 'new members')} will be added."
    if updated:
        return f"{_n(updated, 'member', 'members')} will be updated."
    return "No member changes: only the list gains members."


def _list_line(job: ImportJob, report: dict[str, Any], state: str) -> str:
    if job.mailing_list is None:
        return ""
    name, added = job.mailing_list.name, report.get("list_additions", 0)
    valid = report.get("new", 0) + report.get("updated", 0) + report.get("unchanged", 0)
    if state != "preview":
        return f"{_n(added, 'member', 'members')} added to the list “{name}”."
    others = f" (the other {valid - added:,} are on it already)" if added < valid else ""
    return f"{_n(added, 'member', 'members')} will be added to the list “{name}”{others}."


def _nothing_line(job: ImportJob) -> str:
    report = job.preview
    if not report.get("new", 0) + report.get("updated", 0) + report.get("unchanged", 0):
        return (
            "No row can be imported: every row was rejected. Fix the rows (download them below) "
            "and upload the file again."
        )
    on_list = " and all of them are on the list already" if job.mailing_list_id else ""
    return f"Nothing to import: every valid row matches its member already{on_list}."


def job_view(model_admin: ModelAdmin, request: HttpRequest, token: str) -> HttpResponse:
    _allowed(model_admin, request)
    job = _job(request, token)
    state = _state(job)
    report = job.result if state in ("done", "failed") else job.preview
    shown = _rejected_rows(report)
    rows = job.preview.get("rows", 0)
    return _page(
        model_admin,
        request,
        "members/admin/import_job.html",
        title=TITLES[state],
        job=job,
        state=state,
        report=report,
        figures=_figures(report),
        preview_line=f"What importing the file’s {_n(rows, 'row', 'rows')} would do. Nothing has been saved yet.",
        confirm_line=_confirm_line(report),
        nothing_line=_nothing_line(job),
        list_line=_list_line(job, report, state),
        rejected_rows=shown,
        rejected_more=max(0, report.get("invalid", 0) - len(shown)),
        has_rejected_csv=bool(report.get("invalid")) and state != "failed",
        can_confirm=state == "preview" and import_jobs.import_job_would_change(job=job),
        background=import_jobs.import_job_in_background(job=job),
        background_rows=f"{import_jobs.BACKGROUND_ROWS:,}",
        percent=_percent(job),
        rows_done=f"{job.rows_done:,}",
        rows_total=f"{job.rows_total:,}",
        mailing_list=job.mailing_list,
        **_urls(job),
    )


def confirm_view(model_admin: ModelAdmin, request: HttpRequest, token: str) -> HttpResponse:
    _allowed(model_admin, request)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    job = _job(request, token)
    job_url = _urls(job)["job_url"]
    if job.status != ImportJob.Status.PREVIEWED:
        return HttpResponseRedirect(job_url)  # confirmed already: the page shows how far it got
    if not import_jobs.import_job_confirm(job=job):
        messages.info(request, "Nothing to import: this file would change nothing.")
        return HttpResponseRedirect(job_url)
    if import_jobs.import_job_in_background(job=job):
        tasks.import_job_enqueue(job_id=job.pk)
    else:
        import_jobs.import_job_run(job_id=job.pk, whole=True)
    return HttpResponseRedirect(job_url)


def progress_view(model_admin: ModelAdmin, request: HttpRequest, token: str) -> JsonResponse:
    _allowed(model_admin, request)
    job = _job(request, token)
    state = _state(job)
    return JsonResponse(
        {
            "state": state,
            "done": job.rows_done,
            "total": job.rows_total,
            "percent": _percent(job),
            "finished": state in ("done", "failed", "stalled"),
        }
    )


def rejected_view(model_admin: ModelAdmin, request: HttpRequest, token: str) -> HttpResponse:
    _allowed(model_admin, request)
    job = _job(request, token)
    content = import_jobs.import_job_rejected_csv(job=job)
    if content is None:
        raise Http404("No row of this file was rejected.")
    stem = PurePath(job.filename).stem or "members"
    return FileResponse(
        content, as_attachment=True, filename=f"{stem}-rejected.csv", content_type="text/csv; charset=utf-8"
    )


# --- wiring into the member admin -----------------------------------------------------------------


class MemberImportMixin:
    """The import pages as URLs of the member admin, and the changelist's "Import" button
    (import-export's, pointing to `admin:members_member_import`, now these pages)."""

    import_export_change_list_template = "admin/import_export/change_list_import_export.html"

    def get_urls(self) -> list[URLPattern]:
        def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                return view(self, request, *args, **kwargs)

            return self.admin_site.admin_view(wrapper)  # type: ignore[attr-defined]

        return [
            path("import/", wrap(upload_view), name="members_member_import"),
            path("import/template.csv", wrap(template_view), name="members_member_import_template"),
            path("import/<slug:token>/", wrap(job_view), name="members_member_import_job"),
            path("import/<slug:token>/confirm/", wrap(confirm_view), name="members_member_import_confirm"),
            path("import/<slug:token>/progress/", wrap(progress_view), name="members_member_import_progress"),
            path(
                "import/<slug:token>/rejected.csv", wrap(rejected_view), name="members_member_import_rejected"
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "has_import_permission": self.has_import_permission(request),
        }  # type: ignore[attr-defined]
        return super().changelist_view(request, extra_context)  # type: ignore[misc]
