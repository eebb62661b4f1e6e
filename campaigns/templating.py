"""Burst templates: a sandboxed Django template engine and the member context.

Subject and bodies are Django templates written by staff. They are compiled by
an engine that knows only a whitelist of harmless tags and filters (no `load`,
`include`, `extends`, `debug`, `csrf_token`, `url`, ...), and rendered with a
context of plain strings, so a template can reach nothing but the member's and
the burst's fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.template import Context, Engine, Library, TemplateSyntaxError, defaultfilters, defaulttags

ALLOWED_TAGS = (
    "autoescape",
    "comment",
    "cycle",
    "filter",
    "firstof",
    "for",
    "if",
    "ifchanged",
    "now",
    "spaceless",
    "templatetag",
    "verbatim",
    "with",
    "lorem",
)
ALLOWED_FILTERS = (
    "add",
    "addslashes",
    "capfirst",
    "center",
    "cut",
    "date",
    "default",
    "default_if_none",
    "divisibleby",
    "escape",
    "first",
    "floatformat",
    "force_escape",
    "join",
    "last",
    "length",
    "linebreaks",
    "linebreaksbr",
    "ljust",
    "lower",
    "make_list",
    "pluralize",
    "rjust",
    "safe",
    "slice",
    "slugify",
    "striptags",
    "time",
    "title",
    "truncatechars",
    "truncatewords",
    "upper",
    "urlencode",
    "wordcount",
    "wordwrap",
    "yesno",
)

register = Library()
for _name in ALLOWED_TAGS:
    register.tags[_name] = defaulttags.register.tags[_name]
for _name in ALLOWED_FILTERS:
    register.filters[_name] = defaultfilters.register.filters[_name]


def _engine(*, autoescape: bool) -> Engine:
    engine = Engine(dirs=[], app_dirs=False, loaders=[], autoescape=autoescape, libraries={}, builtins=[])
    # Replace Django's default builtins (which include every tag) with the whitelist.
    engine.template_builtins = [register]
    engine.template_libraries = {}
    return engine


TEXT_ENGINE = _engine(autoescape=False)
HTML_ENGINE = _engine(autoescape=True)


class TemplateProblem(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CompiledBurst:
    subject: Any
    body: Any
    html_body: Any | None

    def render(self, context: dict[str, Any]) -> tuple[str, str, str | None]:
        ctx = Context(context, autoescape=False)
        subject = self.subject.render(ctx)
        text = self.body.render(ctx)
        html = self.html_body.render(Context(context, autoescape=True)) if self.html_body else None
        return subject, text, html


def compile_one(field: str, source: str, *, html: bool = False):
    engine = HTML_ENGINE if html else TEXT_ENGINE
    try:
        return engine.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(field, f"{field}: template error: {exc}") from None
    except Exception as exc:  # a template must never crash the caller
        raise TemplateProblem(field, f"{field}: template error: {exc}") from None


def compile_burst(*, subject: str, body: str, html_body: str = "") -> CompiledBurst:
    return CompiledBurst(
        subject=compile_one("subject", subject),
        body=compile_one("body", body),
        html_body=compile_one("html_body", html_body, html=True) if html_body else None,
    )


def member_context(
    *,
    first_name: str = "",
    middle_name: str = "",
    last_name: str = "",
    email: str = "",
    username: str = "",
    subject: str = "",
    unsubscribe_url: str = "",
) -> dict[str, Any]:
    full_name = " ".join(p for p in (first_name, middle_name, last_name) if p)
    return {
        "member": {
            "first_name": first_name,
            "middle_name": middle_name,
            "last_name": last_name,
            "full_name": full_name,
            "email": email,
            "username": username,
        },
        "burst": {"subject": subject},
        "unsubscribe_url": unsubscribe_url,
    }


EMPTY_MEMBER = member_context(email="member@example.org", unsubscribe_url="https://example.org/u/x/")


def check_templates(*, subject: str, body: str, html_body: str = "") -> CompiledBurst:
    """Compile, then render for a member whose optional fields are all empty."""
    compiled = compile_burst(subject=subject, body=body, html_body=html_body)
    context = dict(EMPTY_MEMBER, burst={"subject": subject})
    for field, template, escape in (
        ("subject", compiled.subject, False),
        ("body", compiled.body, False),
        ("html_body", compiled.html_body, True),
    ):
        if template is None:
            continue
        try:
            template.render(Context(context, autoescape=escape))
        except Exception as exc:
            raise TemplateProblem(
                field, f"{field}: does not render for a member with empty fields: {exc}"
            ) from None
    return compiled
