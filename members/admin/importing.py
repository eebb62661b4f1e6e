"""Import with invalid rows left out.

django-import-export offers the "Confirm import" button only when no row failed
validation. Staff importing a member list want the opposite: see every bad row with
its number and reason, and import the good ones anyway. This mixin

- offers the confirm form when the dry run found validation errors only (an
  unexpected error still offers nothing);
- summarises the dry run (new / updated / unchanged / invalid) for the template;
- on confirm, reports a failure instead of import-export's "Import finished" when
  an unexpected error rolled the whole import back (nothing is half-imported: the
  resource runs in one transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from import_export.results import Result, RowResult


@dataclass(frozen=True)
class InvalidRowReport:
    number: int
    reason: str
    values: tuple[tuple[str, Any], ...]

    @property
    def line(self) -> int:
        """The line in the file (the header is line 1)."""
        return self.number + 1


@dataclass(frozen=True)
class ImportSummary:
    total: int
    new: int
    updated: int
    skipped: int
    invalid: int
    errors: int
    invalid_rows: list[InvalidRowReport]

    @property
    def importable(self) -> int:
        return self.new + self.updated


def _reason(error_dict: dict[str, list[str]]) -> str:
    parts = []
    for field, errors in error_dict.items():
        text = " ".join(str(e) for e in errors)
        parts.append(text if field == NON_FIELD_ERRORS else f"{field}: {text}")
    return "; ".join(parts)


def summarize(result: Result) -> ImportSummary:
    totals = result.totals
    return ImportSummary(
        total=result.total_rows,
        new=totals[RowResult.IMPORT_TYPE_NEW],
        updated=totals[RowResult.IMPORT_TYPE_UPDATE],
        skipped=totals[RowResult.IMPORT_TYPE_SKIP],
        invalid=totals[RowResult.IMPORT_TYPE_INVALID],
        errors=totals[RowResult.IMPORT_TYPE_ERROR] + len(result.base_errors),
        invalid_rows=[
            InvalidRowReport(
                number=row.number,
                reason=_reason(row.error_dict),
                values=tuple(
                    (header, value)
                    for header, value in zip(result.diff_headers, row.values, strict=False)
                    if value not in ("---", "", None)
                ),
            )
            for row in result.invalid_rows
        ],
    )


class SkipInvalidRowsImportMixin:
    import_template_name = "admin/import_export/import_skip_invalid.html"

    def import_action(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        response = super().import_action(request, **kwargs)  # type: ignore[misc]
        context = getattr(response, "context_data", None)
        result = context.get("result") if context else None
        if result is None:
            return response
        summary = summarize(result)
        context["import_summary"] = summary
        if (
            "confirm_form" not in context
            and not result.has_errors()
            and summary.importable
            and context.get("form") is not None
        ):
            context["confirm_form"] = self.create_confirm_form(request, import_form=context["form"])  # type: ignore[attr-defined]
        return response

    def process_result(self, result: Result, request: HttpRequest) -> HttpResponse:
        if not result.has_errors():
            response = super().process_result(result, request)  # type: ignore[misc]
            invalid = result.totals[RowResult.IMPORT_TYPE_INVALID]
            if invalid:
                messages.warning(
                    request,
                    f"{invalid} invalid row{'s were' if invalid != 1 else ' was'} left out: "
                    + "; ".join(
                        f"row {row.number}: {_reason(row.error_dict)}" for row in result.invalid_rows[:20]
                    ),
                )
            return response
        problems = [str(error.error) for error in result.base_errors]
        for number, errors in result.row_errors():
            problems.extend(f"row {number}: {error.error}" for error in errors)
        messages.error(
            request,
            "The import failed and nothing was imported (all changes were rolled back): "
            + "; ".join(problems[:5]),
        )
        opts = self.model._meta  # type: ignore[attr-defined]
        return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_import"))
