"""What a burst must hold before it can be saved or sent: checks without side
effects, shared by the services, the pre-flight (`campaigns.selectors`) and the
admin's compose form.

An **error** refuses a save and a send; a **warning** is shown in pre-flight and
on the send confirmation page. Errors: a line break in the subject or display
name, template syntax errors, text that looks like a broken tag, variables outside
the context a burst sees, dangerous HTML (script, frames, plugins, forms, event
attributes, `javascript:` URLs), and templates that do not render for the
validation members. Warnings found here, in the templates alone: no unsubscribe
link in the bodies. The warnings that need the recipients (merge fields empty for
some of them) are counted by `campaigns.selectors`, from `merge_fields_used`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from typing import Any

from django.template import Template, TemplateSyntaxError
from django.template.base import FilterExpression, Node, NodeList, TokenType, Variable, VariableNode
from django.template.defaulttags import (
    CycleNode,
    FilterNode,
    FirstOfNode,
    ForNode,
    IfChangedNode,
    IfNode,
    NowNode,
    TemplateLiteral,
    WithNode,
)
from django.utils.html import strip_tags

from campaigns.templating import (
    ALLOWED_FILTERS,
    ALLOWED_TAGS,
    CHECK_ENGINE,
    CONTEXT_PATH_ORDER,
    CONTEXT_PATHS,
    EMPTY_MEMBER,
    FILLED_MEMBER,
    CompiledBurst,
    Piece,
    TemplateProblem,
    check_templates,
    template_pieces,
)
from common.errors import InvalidInput

ERROR = "error"
WARNING = "warning"
TEMPLATE_FIELDS = ("subject", "body", "html_body")
SUBJECT_MAX = 200
SNIPPET_MAX = 60
# More than this many problems of one kind in one field are not listed one by one.
MAX_PER_FIELD = 10

_PATH_ORDER = CONTEXT_PATH_ORDER
ALLOWED_VARIABLES = ", ".join(".".join(path) for path in _PATH_ORDER)
# Member fields that can be empty for a recipient (an address never is).
MERGE_FIELDS = ("first_name", "middle_name", "last_name", "full_name", "username")
NAME_PARTS = frozenset({"first_name", "middle_name", "last_name", "full_name"})


@dataclass(frozen=True)
class Check:
    level: str  # "error" | "warning"
    field: str  # "subject" | "body" | "html_body" | "from_name"
    message: str  # one plain sentence for a person
    line: int | None = None
    snippet: str = ""  # the offending text, short
    count: int | None = None  # warnings about recipients: how many
    example: str = ""  # one rendered example (warnings)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_error(self) -> bool:
        return self.level == ERROR

    @property
    def where(self) -> str:
        """ "body, line 3": the field, and the line when known."""
        return f"{self.field}, line {self.line}" if self.line else self.field

    @property
    def sentence(self) -> str:
        """The check naming its field, line and snippet: "body, line 3, at “{{ x }”: …".
        A message that already starts with its field ("subject is required") stays as it is."""
        if self.message.startswith(self.field):
            return self.message
        at = f", at “{self.snippet}”" if self.snippet else ""
        return f"{self.where}{at}: {self.message}"

    def as_invalid_input(self) -> InvalidInput:
        return InvalidInput(self.sentence, field=self.field, line=self.line, snippet=self.snippet)


def _error(field: str, message: str, *, line: int | None = None, snippet: str = "") -> Check:
    return Check(level=ERROR, field=field, message=message, line=line, snippet=_short(snippet))


def _short(text: str, limit: int = SNIPPET_MAX) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- text that looks like a broken tag ---------------------------------------------------------

_OPENERS = re.compile(r"\{\{|\{%|\{[ \t]+\{")
_CLOSE_LATER = re.compile(r"[ \t]*\}")


def _line_at(text: str, index: int) -> tuple[int, int]:
    """(start, end) of the line of `text` that holds `index`."""
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return start, len(text) if end == -1 else end


def _opener_message(opener: str) -> str:
    if opener.startswith("{{"):
        return "This looks like a broken variable: “{{” is not closed with “}}” on the same line."
    if opener.startswith("{%"):
        return "This looks like a broken tag: “{%” is not closed with “%}” on the same line."
    return "This looks like a broken variable: write “{{” without a space between the braces."


def broken_tag_checks(field: str, source: str) -> list[Check]:
    """Errors for text Django leaves as text but that was meant as a tag: an opening
    `{{` or `{%` not closed on its line, `{ {`, and a `}}`, `} }` or `%}` that closes
    no brace. Braces of CSS and JSON balance out and pass; `{% verbatim %}` and
    `{% comment %}` blocks are left alone."""
    found: list[Check] = []
    depth = 0  # braces opened in the text so far (tags apart), across pieces
    previous_tag = ""  # the tag right before this text, if any
    for piece in template_pieces(source):
        if piece.kind != TokenType.TEXT or piece.literal:
            previous_tag = piece.raw if piece.kind != TokenType.TEXT else ""
            continue
        openers, skip = _unclosed_openers(field, piece)
        closers, depth = _stray_closers(field, piece, depth, skip, previous_tag)
        # A line with a broken opener has its closers reported with it.
        opener_lines = {check.line for check in openers}
        found += openers + [check for check in closers if check.line not in opener_lines]
        previous_tag = ""
    return _dedupe(found)


def _piece_line(piece: Piece, index: int) -> int:
    return piece.line + piece.raw.count("\n", 0, index)


def _unclosed_openers(field: str, piece: Piece) -> tuple[list[Check], set[int]]:
    """Errors for `{{`, `{%` and `{ {` in text, and the positions of their braces."""
    found, skip = [], set()
    for match in _OPENERS.finditer(piece.raw):
        _start, end = _line_at(piece.raw, match.start())
        snippet = piece.raw[match.start() : end]
        found.append(
            _error(
                field, _opener_message(match.group()), line=_piece_line(piece, match.start()), snippet=snippet
            )
        )
        skip.update(range(match.start(), match.end()))
    return found, skip


def _stray_closers(
    field: str, piece: Piece, depth: int, skip: set[int], previous_tag: str
) -> tuple[list[Check], int]:
    """Errors for closers that match no opening brace; the depth after the piece."""
    text = piece.raw
    found = []
    for index, char in enumerate(text):
        if index in skip or char not in "{}":
            continue
        if char == "{":
            depth += 1
            continue
        if depth:
            depth -= 1
            continue
        closer = _stray_closer(text, index, right_after_tag=bool(previous_tag) and index == 0)
        if not closer:
            continue
        begin = index - 1 if closer == "%}" else index  # where the closer starts
        start, _end = _line_at(text, index)
        before = text[max(start, begin - SNIPPET_MAX + len(closer)) : begin] or previous_tag
        if closer == "}":
            message = "This looks like a broken tag: “}” after a tag is one brace too many."
        else:
            message = (
                f"This looks like a broken tag: “{closer.strip()}” closes nothing "
                "(its opening “{{” or “{%” is missing or broken)."
            )
        snippet = before + text[begin : begin + len(closer)]
        found.append(_error(field, message, line=_piece_line(piece, index), snippet=snippet))
        skip.update(range(begin, begin + len(closer)))
    return found, depth


def _stray_closer(text: str, index: int, *, right_after_tag: bool) -> str:
    """The closer a `}` that matches no `{` belongs to: `}}`, `} }`, `%}`, or a `}`
    right after a tag (`{{ x }}}`); "" for a lone brace in prose."""
    if text.startswith("}}", index):
        return "}}"
    if index and text[index - 1] == "%":
        return "%}"
    later = _CLOSE_LATER.match(text, index + 1)
    if later:
        return text[index : later.end()]
    return "}" if right_after_tag else ""


def _dedupe(checks: list[Check]) -> list[Check]:
    seen: set[tuple] = set()
    unique = []
    for check in checks:
        key = (check.field, check.line, check.snippet, check.message)
        if key not in seen:
            seen.add(key)
            unique.append(check)
    return unique[:MAX_PER_FIELD]


# --- syntax --------------------------------------------------------------------------------------

_NOT_REGISTERED = " Did you forget to register or load this tag?"


def _syntax_message(exc: Exception) -> str:
    text = str(exc)
    if _NOT_REGISTERED in text:
        text = text.replace(
            _NOT_REGISTERED, f" The tags a burst can use are: {', '.join(sorted(ALLOWED_TAGS))}."
        )
    elif text.startswith("Invalid filter"):
        text += f". The filters a burst can use are: {', '.join(ALLOWED_FILTERS)}."
    return f"template error: {text}"


def compile_for_checks(field: str, source: str) -> tuple[Template | None, list[Check]]:
    """The template compiled for inspection, or the syntax error with its line."""
    try:
        return CHECK_ENGINE.from_string(source), []
    except TemplateSyntaxError as exc:
        debug = getattr(exc, "template_debug", None) or {}
        return None, [
            _error(field, _syntax_message(exc), line=debug.get("line"), snippet=debug.get("during", ""))
        ]
    except Exception as exc:  # anything else the parser raises: never crash the caller
        return None, [_error(field, _syntax_message(exc))]


# --- variables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """A variable a template renders, where, and whether an empty value is covered
    (a `|default`, or an `{% if %}` around it that tests the field)."""

    path: tuple[str, ...]
    line: int | None
    snippet: str
    covered: bool


def _source_of(node: Node) -> tuple[int | None, str]:
    token = getattr(node, "token", None)
    if token is None:
        return None, ""
    if token.token_type == TokenType.VAR:
        return token.lineno, f"{{{{ {token.contents} }}}}"
    return token.lineno, f"{{% {token.contents} %}}"


def _filter_name(func: Any) -> str:
    return getattr(func, "__name__", "")


def _variables(expression: Any, *, with_subject: bool = True) -> Iterator[Variable]:
    """The variables a filter expression reads: its subject and its filters' arguments."""
    if not isinstance(expression, FilterExpression):
        return
    if with_subject and isinstance(expression.var, Variable):
        yield expression.var
    for _func, args in expression.filters:
        for lookup, arg in args:
            if lookup and isinstance(arg, Variable):
                yield arg


def _condition_expressions(condition: Any) -> Iterator[FilterExpression]:
    if condition is None:
        return
    if isinstance(condition, TemplateLiteral):
        yield condition.value
        return
    for part in (getattr(condition, "first", None), getattr(condition, "second", None)):
        yield from _condition_expressions(part)


def _member_fields(expressions: Iterator[FilterExpression]) -> frozenset[str]:
    fields = set()
    for expression in expressions:
        for var in _variables(expression):
            if var.lookups and len(var.lookups) >= 2 and var.lookups[0] == "member":
                fields.add(var.lookups[1])
    if fields & NAME_PARTS:
        fields.add("full_name")  # any name part tested: full_name is not empty there
    return frozenset(fields)


class _Walker:
    """Walks a compiled template: what it renders, and what it reads that a burst's
    context does not have."""

    def __init__(self) -> None:
        self.unknown: list[tuple[str, int | None, str]] = []  # (path, line, snippet)
        self.rendered: list[Usage] = []
        self.global_names: set[str] = set()

    def run(self, nodelist: NodeList) -> None:
        # `{% cycle … as x %}`, `{% firstof … as x %}`, `{% now … as x %}` name a
        # variable for the rest of the template.
        for node in self._all_nodes(nodelist):
            for attribute in ("variable_name", "asvar"):
                name = getattr(node, attribute, None)
                if isinstance(name, str) and name:
                    self.global_names.add(name)
        self._walk(nodelist, frozenset(), frozenset())

    def _all_nodes(self, nodelist: NodeList) -> Iterator[Node]:
        for node in nodelist:
            yield node
            for attribute in getattr(node, "child_nodelists", ()):
                yield from self._all_nodes(getattr(node, attribute, None) or [])

    def _known(self, lookups: tuple[str, ...], bound: frozenset[str]) -> bool:
        if lookups[0] in bound or lookups[0] in self.global_names:
            return True
        for size in range(len(lookups), 0, -1):
            if lookups[:size] in CONTEXT_PATHS:
                # An index into a string ({{ member.first_name.0 }}) is fine.
                return all(part.isdigit() for part in lookups[size:])
        return False

    def _read(self, expression: Any, node: Node, bound: frozenset[str], *, with_subject: bool = True) -> None:
        for var in _variables(expression, with_subject=with_subject):
            lookups = tuple(var.lookups or ())
            if lookups and not self._known(lookups, bound):
                line, snippet = _source_of(node)
                self.unknown.append((".".join(lookups), line, snippet))

    def _walk(self, nodelist: NodeList, bound: frozenset[str], guarded: frozenset[str]) -> None:
        for node in nodelist:
            self._node(node, bound, guarded)

    def _node(self, node: Node, bound: frozenset[str], guarded: frozenset[str]) -> None:
        if isinstance(node, VariableNode):
            expression = node.filter_expression
            self._read(expression, node, bound)
            var = expression.var
            if isinstance(var, Variable) and var.lookups:
                line, snippet = _source_of(node)
                path = tuple(var.lookups)
                has_default = any(_filter_name(f) == "default" for f, _a in expression.filters)
                covered = has_default or (len(path) > 1 and path[1] in guarded)
                self.rendered.append(Usage(path, line, snippet, covered))
            return
        if isinstance(node, ForNode):
            self._read(node.sequence, node, bound)
            self._walk(node.nodelist_loop, bound | set(node.loopvars) | {"forloop"}, guarded)
            self._walk(node.nodelist_empty, bound, guarded)
            return
        if isinstance(node, IfNode):
            expressions = [e for c, _n in node.conditions_nodelists for e in _condition_expressions(c)]
            for expression in expressions:
                self._read(expression, node, bound)
            inner = guarded | _member_fields(iter(expressions))
            for _condition, nodelist in node.conditions_nodelists:
                self._walk(nodelist, bound, inner)
            return
        if isinstance(node, WithNode):
            for expression in node.extra_context.values():
                self._read(expression, node, bound)
            self._walk(node.nodelist, bound | set(node.extra_context), guarded)
            return
        if isinstance(node, IfChangedNode):
            for expression in node._varlist:
                self._read(expression, node, bound)
        elif isinstance(node, CycleNode):
            for expression in node.cyclevars:
                self._read(expression, node, bound)
        elif isinstance(node, FirstOfNode):
            for expression in node.vars:
                self._read(expression, node, bound)
        elif isinstance(node, FilterNode):
            self._read(node.filter_expr, node, bound, with_subject=False)  # its subject is the block
        elif not isinstance(node, NowNode):
            self._read(getattr(node, "count", None), node, bound)  # {% lorem count %}
        for attribute in getattr(node, "child_nodelists", ()):
            self._walk(getattr(node, attribute, None) or NodeList(), bound, guarded)


def walk_template(template: Template) -> _Walker:
    walker = _Walker()
    walker.run(template.nodelist)
    return walker


def variable_checks(field: str, walker: _Walker) -> list[Check]:
    found = []
    for path, line, snippet in walker.unknown:
        found.append(
            _error(
                field,
                f"“{path}” is not a variable a burst can use (it would render empty); "
                f"the ones you can use are {ALLOWED_VARIABLES}.",
                line=line,
                snippet=snippet,
            )
        )
    return _dedupe(found)


# --- dangerous HTML ---------------------------------------------------------------------------

FORBIDDEN_ELEMENTS = frozenset({"script", "iframe", "frame", "frameset", "object", "embed", "applet", "form"})
URL_ATTRIBUTES = frozenset(
    {
        "href",
        "src",
        "action",
        "formaction",
        "xlink:href",
        "data",
        "background",
        "poster",
        "cite",
        "longdesc",
        "lowsrc",
        "dynsrc",
        "codebase",
        "ping",
        "srcset",
        "usemap",
        "manifest",
        "icon",
    }
)
_URL_NOISE = re.compile(r"[\x00-\x20\x7f]+")
_SCRIPT_SCHEMES = ("javascript:", "vbscript:")


def _script_url(value: str) -> bool:
    """Whether a URL runs script. Browsers drop whitespace and control characters
    from URLs, and the parser has already decoded entities (`&#106;`, `&colon;`)."""
    for part in value.split(","):  # srcset lists several
        if _URL_NOISE.sub("", part).lower().startswith(_SCRIPT_SCHEMES):
            return True
    return False


class _DangerFinder(HTMLParser):
    """Finds what an email's HTML must not carry, with the line of each."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str, str]] = []  # (line, message, snippet)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        line = self.getpos()[0]
        snippet = self.get_starttag_text() or f"<{tag}>"
        if tag in FORBIDDEN_ELEMENTS:
            self.found.append((line, f"<{tag}> is not allowed in an email's HTML.", snippet))
        for name, value in attrs:
            value = value or ""
            if name.startswith("on") and len(name) > 2:
                self.found.append(
                    (
                        line,
                        f"The event attribute {name}= is not allowed: an email's HTML runs no script.",
                        snippet,
                    )
                )
            elif name in URL_ATTRIBUTES and _script_url(value):
                self.found.append((line, f"A javascript: URL is not allowed (in {name}=).", snippet))
            elif name in ("style", "content") and "javascript:" in _URL_NOISE.sub("", value).lower():
                self.found.append((line, f"A javascript: URL is not allowed (in {name}=).", snippet))

    handle_startendtag = handle_starttag


def dangerous_html(html: str) -> list[tuple[int, str, str]]:
    finder = _DangerFinder()
    finder.feed(html)
    finder.close()
    return finder.found


def _masked(source: str) -> str:
    """The HTML as it stands around the template tags: each tag (and each
    `{% comment %}` block) blanked to as many x's, so lines and columns stay."""
    parts = []
    for piece in template_pieces(source):
        if piece.kind == TokenType.TEXT and not piece.comment:
            parts.append(piece.raw)
        else:
            parts.append(re.sub(r"[^\n]", "x", piece.raw))
    return "".join(parts)


def html_checks(field: str, source: str) -> list[Check]:
    found = [
        _error(field, message, line=line, snippet=snippet)
        for line, message, snippet in dangerous_html(_masked(source))
    ]
    return _dedupe(found)


def rendered_html_checks(field: str, rendered: str) -> list[Check]:
    """The same on HTML as rendered: what the tags assembled (`<scr{# #}ipt>`)."""
    return _dedupe(
        [_error(field, message, snippet=snippet) for _line, message, snippet in dangerous_html(rendered)]
    )


# --- all checks ----------------------------------------------------------------------------------


def _field_checks(*, subject: str, body: str, html_body: str, from_name: str) -> list[Check]:
    found = []
    if not subject.strip():
        found.append(_error("subject", "subject is required"))
    elif len(subject) > SUBJECT_MAX:
        found.append(_error("subject", f"subject must be at most {SUBJECT_MAX} characters"))
    if not body.strip() and not html_body.strip():
        found.append(_error("body", "body or html_body is required"))
    for name, value in (("subject", subject), ("from_name", from_name)):
        if "\r" in value or "\n" in value:
            found.append(_error(name, f"{name} must not contain line breaks"))
    return found


def _template_checks(field: str, source: str) -> tuple[list[Check], _Walker | None]:
    found = broken_tag_checks(field, source)
    template, errors = compile_for_checks(field, source)
    found += errors
    walker = None
    if template is not None:
        walker = walk_template(template)
        found += variable_checks(field, walker)
    if field == "html_body":
        found += html_checks(field, source)
    return found, walker


def _render_checks(*, subject: str, body: str, html_body: str) -> list[Check]:
    """The templates rendered for the validation members: what fails or hits a limit,
    and dangerous HTML that only the rendering assembles."""
    try:
        compiled = check_templates(subject=subject, body=body, html_body=html_body)
    except TemplateProblem as exc:
        return [_error(exc.field, exc.message.removeprefix(f"{exc.field}: "))]
    found: list[Check] = []
    if compiled.html_body is not None:
        for member in (EMPTY_MEMBER, FILLED_MEMBER):
            _s, _t, html = compiled.render(dict(member, burst={"subject": subject}))
            found += rendered_html_checks("html_body", html or "")
    return _dedupe(found)


def _unsubscribe_warning(*, body: str, walkers: dict[str, _Walker]) -> list[Check]:
    parts = ("body", "html_body") if body.strip() else ("html_body",)
    for part in parts:
        walker = walkers.get(part)
        if walker is not None and any(u.path == ("unsubscribe_url",) for u in walker.rendered):
            return []
    return [
        Check(
            level=WARNING,
            field="body" if body.strip() else "html_body",
            message="The body has no unsubscribe link ({{ unsubscribe_url }}): the footer adds one to every "
            "message, after your text.",
        )
    ]


def burst_checks(*, subject: str, body: str, html_body: str, from_name: str) -> list[Check]:
    """Every error, then the warnings the templates alone show (no unsubscribe link)."""
    found = _field_checks(subject=subject, body=body, html_body=html_body, from_name=from_name)
    walkers: dict[str, _Walker] = {}
    for field, source in (("subject", subject), ("body", body), ("html_body", html_body)):
        if not source:
            continue
        errors, walker = _template_checks(field, source)
        found += errors
        if walker is not None:
            walkers[field] = walker
    if not found:
        found += _render_checks(subject=subject, body=body, html_body=html_body)
    if not any(check.is_error for check in found):
        found += _unsubscribe_warning(body=body, walkers=walkers)
    return found


def burst_validate(*, subject: str, body: str, html_body: str = "", from_name: str = "") -> None:
    """Refuse what can never be sent: header injection, broken or dangerous templates.
    Raises InvalidInput for the first error, naming its field, line and snippet."""
    for check in burst_checks(subject=subject, body=body, html_body=html_body, from_name=from_name):
        if check.is_error:
            raise check.as_invalid_input()


# --- merge fields left empty -----------------------------------------------------------------------


def merge_fields_used(*, subject: str, body: str, html_body: str) -> dict[str, tuple[str, Usage]]:
    """Member fields the templates render bare (no `|default`, no `{% if %}` on the
    field around them): field -> (the part, its first such use). Templates that do
    not compile use none."""
    used: dict[str, tuple[str, Usage]] = {}
    for part, source in (("subject", subject), ("body", body), ("html_body", html_body)):
        if not source:
            continue
        template, _errors = compile_for_checks(part, source)
        if template is None:
            continue
        for usage in walk_template(template).rendered:
            if len(usage.path) >= 2 and usage.path[0] == "member" and usage.path[1] in MERGE_FIELDS:
                if not usage.covered and usage.path[1] not in used:
                    used[usage.path[1]] = (part, usage)
    return used


_MARK = "\u2063emailer-field\u2063"


def empty_field_example(*, compiled: CompiledBurst, context: dict[str, Any], part: str, field: str) -> str:
    """The line of `part` (as rendered for `context`, a member with `field` empty)
    where the field shows: what that member reads, e.g. "Hello , see you…"."""
    marked = {**context, "member": {**context["member"], field: _MARK}}
    try:
        rendered = dict(zip(TEMPLATE_FIELDS, compiled.render(context), strict=True))
        with_mark = dict(zip(TEMPLATE_FIELDS, compiled.render(marked), strict=True))
    except TemplateProblem:
        return ""
    text, text_marked = rendered.get(part) or "", with_mark.get(part) or ""
    lines, marked_lines = text.splitlines(), text_marked.splitlines()
    example = next((line for line in lines if line.strip()), "")
    if len(lines) == len(marked_lines):
        example = next((lines[i] for i, line in enumerate(marked_lines) if _MARK in line), example)
    if part == "html_body":
        example = strip_tags(example)
    return _short(" ".join(example.split()), 120)
