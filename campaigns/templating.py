"""Burst templates: a sandboxed Django template engine, the member context, and
the limits every render runs under.

Subject and bodies are Django templates written by staff. They are compiled by
an engine that knows only a whitelist of harmless tags and filters (no `load`,
`include`, `extends`, `debug`, `csrf_token`, `url`, ...), and rendered with a
context of plain strings, so a template can reach nothing but the member's and
the burst's fields.

No template and no member's data can make a render build much or run long (a
render runs once per recipient inside a worker: one template or one member's
name must not stall a burst, nor exhaust the worker's memory):

- a rendered part is at most TEMPLATE_MAX_SIZE characters, and one render may
  process at most WORK_FACTOR times that (filter inputs and results, loop output);
- what pads or repeats takes small arguments only (ljust/rjust/center widths,
  lorem counts, floatformat digits, date/time/now formats), and join and add are
  sized before they run;
- every filter's input is bounded, tighter for the few that cost 0.1 µs or more
  a character (striptags, wordwrap, slugify, linebreaks, urlencode; join per
  item), so that no single call runs long;
- loops run at most TEMPLATE_MAX_LOOP_ITERATIONS iterations per part, nested
  loops counted together;
- the parts of one message share a deadline of TEMPLATE_RENDER_TIMEOUT seconds.

Huey's worker threads cannot be interrupted by a signal, so the limits are
checked from inside rendering: at every loop iteration and every filter call.
A render that hits one raises TemplateProblem naming the field and the limit.

The audit behind the whitelist (what each entry can cost):
- tags: `for` is bounded here; `lorem` and `now` are bounded here; `cycle`,
  `firstof`, `with`, `if`, `ifchanged`, `autoescape`, `comment`, `templatetag`,
  `verbatim`, `spaceless` and `filter` only choose, compare or copy what other
  nodes rendered (spaceless is one linear regex; `filter` runs the guarded filters).
- filters: ljust/rjust/center pad (width bounded); floatformat's digits are
  bounded (Django itself returns values of over 200 digits unchanged); join and add
  are sized first; date/time formats are bounded; escape, force_escape, addslashes,
  urlencode, linebreaks, linebreaksbr, upper and slugify grow their input by a small
  factor (their result is checked); make_list turns a bounded string into a list;
  cut, slice, truncatechars, truncatewords, wordwrap, first, last, striptags,
  capfirst, lower, title, default, default_if_none, yesno, pluralize, length,
  wordcount, divisibleby and safe never make more than they get.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import css_inline
import html2text
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template import Context, Engine, Library, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import Lexer, Node, NodeList, TextNode, TokenType, VariableNode, tag_re
from django.utils import lorem_ipsum
from django.utils.html import escape
from django.utils.safestring import mark_safe

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

# Small bounds for what pads or repeats.
MAX_WIDTH = 1000  # ljust, rjust, center
MAX_LOREM_WORDS = 1000
MAX_LOREM_PARAGRAPHS = 100
MAX_DIGITS = 100  # floatformat
MAX_FORMAT = 100  # date, time and now format strings
# A render may process this many times TEMPLATE_MAX_SIZE characters in all.
WORK_FACTOR = 10
# Inputs of the filters that cost 0.1-1.2 µs a character (measured on 1 MB) are
# bounded to this fraction of TEMPLATE_MAX_SIZE, so one call stays under ~0.15 s;
# join escapes item by item (~6 µs an item).
INPUT_DIVISOR = {
    "striptags": 10,
    "wordwrap": 10,
    "slugify": 10,
    "linebreaks": 10,
    "urlencode": 10,
    "join": 100,
}


class TemplateProblem(Exception):
    """A template that does not compile or does not render, naming its field.

    `message` starts with the field; `detail` is the reason alone."""

    def __init__(self, field: str, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.detail = detail or message


# --- the limits ---------------------------------------------------------------------------


class LimitExceeded(Exception):
    """Raised inside rendering; the render turns it into a TemplateProblem."""


class _Limits:
    """The TEMPLATE_* settings, read once: a `settings.X` read costs ~0.5 µs, more
    than a fast render of a whole part. Refreshed when a test overrides them."""

    max_size: int
    max_iterations: int
    timeout: float

    def __init__(self) -> None:
        self.load()

    def load(self) -> None:
        self.max_size = settings.TEMPLATE_MAX_SIZE
        self.max_iterations = settings.TEMPLATE_MAX_LOOP_ITERATIONS
        self.timeout = settings.TEMPLATE_RENDER_TIMEOUT


LIMITS = _Limits()


@receiver(setting_changed)
def _reload_limits(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("TEMPLATE_"):
        LIMITS.load()


class Budget:
    """What one part's render may still spend; the parts of a message share a deadline."""

    __slots__ = ("deadline", "max_size", "iterations", "work", "tripped")

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline if deadline is not None else time.monotonic() + LIMITS.timeout
        self.max_size = LIMITS.max_size
        self.iterations = 0
        self.work = 0
        # The first limit hit, kept: `{% if %}` swallows exceptions of its
        # operators, and a limit must still fail the render.
        self.tripped = ""

    def trip(self, message: str) -> None:
        if not self.tripped:
            self.tripped = message
        raise LimitExceeded(self.tripped)

    def check_time(self) -> None:
        if self.tripped:
            raise LimitExceeded(self.tripped)
        if time.monotonic() > self.deadline:
            self.trip(f"rendering took longer than {LIMITS.timeout:g} s (TEMPLATE_RENDER_TIMEOUT)")

    def tick(self) -> None:
        self.iterations += 1
        if self.iterations > LIMITS.max_iterations or self.tripped or time.monotonic() > self.deadline:
            if self.iterations > LIMITS.max_iterations:
                self.trip(
                    f"more than {LIMITS.max_iterations:,} loop iterations (TEMPLATE_MAX_LOOP_ITERATIONS)"
                )
            self.check_time()

    def spend(self, characters: int) -> None:
        self.work += characters
        if self.work > WORK_FACTOR * self.max_size:
            self.trip(
                f"processed more than {WORK_FACTOR * self.max_size:,} characters "
                f"({WORK_FACTOR} × TEMPLATE_MAX_SIZE, in filters and loops)"
            )


_ACTIVE: ContextVar[Budget | None] = ContextVar("emailer_template_budget", default=None)


def _refuse(budget: Budget | None, message: str) -> None:
    if budget is not None:
        budget.trip(message)
    raise LimitExceeded(message)


_SIZED = (str, list, tuple)


def _max_size(budget: Budget | None) -> int:
    return budget.max_size if budget is not None else LIMITS.max_size


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


# --- filters: every call checked --------------------------------------------------------------

Check = Callable[[Budget | None, str, Any, Any], None]


def _width_check(budget: Budget | None, name: str, value: Any, arg: Any) -> None:
    width = _int(arg)
    if width is not None and width > MAX_WIDTH:
        _refuse(budget, f"{name}:{width} pads to {width:,} characters; at most {MAX_WIDTH:,}")


def _digits_check(budget: Budget | None, name: str, value: Any, arg: Any) -> None:
    if arg is None:
        return
    digits = _int(str(arg).rstrip("gu") or "-1")  # "2g", "-3u": grouping and locale suffixes
    if digits is not None and abs(digits) > MAX_DIGITS:
        _refuse(budget, f"{name}:{digits} asks for {abs(digits):,} digits; at most {MAX_DIGITS}")


def _format_check(budget: Budget | None, name: str, value: Any, arg: Any) -> None:
    if arg is not None and len(str(arg)) > MAX_FORMAT:
        _refuse(budget, f"{name}: a format of more than {MAX_FORMAT} characters")


def _join_check(budget: Budget | None, name: str, value: Any, arg: Any) -> None:
    if not isinstance(value, _SIZED):
        return
    items = len(value) if isinstance(value, str) else sum(len(str(v)) for v in value)
    total = items + len(str(arg)) * max(0, len(value) - 1)
    if total > _max_size(budget):
        _refuse(budget, f"{name} would build {total:,} characters; at most {_max_size(budget):,}")


def _add_check(budget: Budget | None, name: str, value: Any, arg: Any) -> None:
    if isinstance(value, _SIZED) and isinstance(arg, _SIZED):
        total = len(value) + len(arg)
        if total > _max_size(budget):
            _refuse(budget, f"{name} would build {total:,} characters; at most {_max_size(budget):,}")


CHECKS: dict[str, Check] = {
    "ljust": _width_check,
    "rjust": _width_check,
    "center": _width_check,
    "floatformat": _digits_check,
    "date": _format_check,
    "time": _format_check,
    "join": _join_check,
    "add": _add_check,
}


def _guarded(name: str, func: Callable) -> Callable:
    check = CHECKS.get(name)
    divisor = INPUT_DIVISOR.get(name, 1)

    @functools.wraps(func)  # keeps is_safe, needs_autoescape and the signature Django checks
    def guarded(value, *args, **kwargs):
        budget = _ACTIVE.get()
        size = len(value) if isinstance(value, _SIZED) else 0
        limit = budget.max_size if budget is not None else LIMITS.max_size
        if size * divisor > limit:
            _refuse(budget, f"{name} got {size:,} characters; at most {limit // divisor:,}")
        if check is not None:
            check(budget, name, value, args[0] if args else None)
        if budget is None:
            return func(value, *args, **kwargs)
        if budget.tripped or time.monotonic() > budget.deadline:
            budget.check_time()
        result = func(value, *args, **kwargs)
        made = len(result) if isinstance(result, _SIZED) else 0
        if made > limit:
            budget.trip(f"{name} built {made:,} characters; at most {limit:,} (TEMPLATE_MAX_SIZE)")
        # Budget.spend, inlined: this runs for every filter call.
        budget.work += size + made
        if budget.work > WORK_FACTOR * limit:
            budget.spend(0)
        return result

    return guarded


# --- tags: loops, lorem, now -------------------------------------------------------------------


class _BoundedFor(defaulttags.ForNode):
    """Django's ForNode.render (5.2), with each iteration counted and timed and its
    output measured as it is made."""

    def render(self, context) -> str:
        budget = _ACTIVE.get()
        if budget is not None:
            return self._render(context, budget)
        # Rendered through Django's API directly, not BoundedTemplate: bound it anyway.
        budget = Budget()
        token = _ACTIVE.set(budget)
        try:
            return self._render(context, budget)
        finally:
            _ACTIVE.reset(token)

    def _render(self, context, budget: Budget) -> str:
        if "forloop" in context:
            parentloop = context["forloop"]
        else:
            parentloop = {}
        with context.push():
            values = self.sequence.resolve(context, ignore_failures=True)
            if values is None:
                values = []
            if not hasattr(values, "__len__"):
                values = list(values)
            len_values = len(values)
            if len_values < 1:
                return self.nodelist_empty.render(context)
            nodelist = []
            if self.is_reversed:
                values = reversed(values)
            num_loopvars = len(self.loopvars)
            unpack = num_loopvars > 1
            loop_dict = context["forloop"] = {"parentloop": parentloop}
            for i, item in enumerate(values):
                budget.tick()
                loop_dict["counter0"] = i
                loop_dict["counter"] = i + 1
                loop_dict["revcounter"] = len_values - i
                loop_dict["revcounter0"] = len_values - i - 1
                loop_dict["first"] = i == 0
                loop_dict["last"] = i == len_values - 1

                pop_context = False
                if unpack:
                    try:
                        len_item = len(item)
                    except TypeError:  # not an iterable
                        len_item = 1
                    if num_loopvars != len_item:
                        raise ValueError(
                            f"Need {num_loopvars} values to unpack in for loop; got {len_item}. "
                        )
                    context.update(dict(zip(self.loopvars, item, strict=False)))
                    pop_context = True
                else:
                    context[self.loopvars[0]] = item

                before = budget.work
                made = 0
                for node in self.nodelist_loop:
                    bit = node.render_annotated(context)
                    made += len(bit)
                    nodelist.append(bit)
                # What nested loops and filters already counted is not counted twice.
                fresh = made - (budget.work - before)
                if fresh > 0:
                    budget.spend(fresh)

                if pop_context:
                    context.pop()
        return mark_safe("".join(nodelist))


def _do_for(parser, token) -> Node:
    node = defaulttags.do_for(parser, token)
    return _BoundedFor(
        node.loopvars, node.sequence, node.is_reversed, node.nodelist_loop, node.nodelist_empty
    )


class _BoundedLorem(defaulttags.LoremNode):
    def render(self, context) -> str:
        try:
            count = int(self.count.resolve(context))
        except (ValueError, TypeError):
            count = 1
        bound = MAX_LOREM_WORDS if self.method == "w" else MAX_LOREM_PARAGRAPHS
        if count > bound:
            unit = "words" if self.method == "w" else "paragraphs"
            _refuse(_ACTIVE.get(), f"lorem {count:,} {unit}; at most {bound:,}")
        if self.method == "w":
            return lorem_ipsum.words(count, common=self.common)
        paras = lorem_ipsum.paragraphs(count, common=self.common)
        if self.method == "p":
            paras = [f"<p>{p}</p>" for p in paras]
        return "\n\n".join(paras)


def _lorem(parser, token) -> Node:
    node = defaulttags.lorem(parser, token)
    return _BoundedLorem(node.count, node.method, node.common)


def _now(parser, token) -> Node:
    node = defaulttags.now(parser, token)
    if len(node.format_string) > MAX_FORMAT:
        raise TemplateSyntaxError(f"'now' takes a format of at most {MAX_FORMAT} characters")
    return node


BOUNDED_TAGS = {"for": _do_for, "lorem": _lorem, "now": _now}

register = Library()
for _name in ALLOWED_TAGS:
    register.tags[_name] = BOUNDED_TAGS.get(_name) or defaulttags.register.tags[_name]
for _name in ALLOWED_FILTERS:
    register.filters[_name] = _guarded(_name, defaultfilters.register.filters[_name])


def _engine(*, autoescape: bool, debug: bool = False) -> Engine:
    engine = Engine(
        dirs=[], app_dirs=False, loaders=[], autoescape=autoescape, libraries={}, builtins=[], debug=debug
    )
    # Replace Django's default builtins (which include every tag) with the whitelist.
    engine.template_builtins = [register]
    engine.template_libraries = {}
    return engine


TEXT_ENGINE = _engine(autoescape=False)
HTML_ENGINE = _engine(autoescape=True)
# The authoring checks compile with this one: its syntax errors carry the line.
CHECK_ENGINE = _engine(autoescape=False, debug=True)


class BoundedTemplate:
    """A compiled part (subject, body or html_body); every render runs under a Budget."""

    def __init__(self, field: str, template) -> None:
        self.field = field
        self.template = template

    @property
    def nodelist(self) -> NodeList:
        return self.template.nodelist

    def render(self, context: Context, *, deadline: float | None = None) -> str:
        budget = Budget(deadline)
        token = _ACTIVE.set(budget)
        try:
            return self.render_under(budget, context)
        finally:
            _ACTIVE.reset(token)

    def render_under(self, budget: Budget, context: Context) -> str:
        """Render under `budget`, the active one; the counts start again for each part."""
        budget.iterations = budget.work = 0
        try:
            out = self.template.render(context)
        except Exception as exc:
            raise self._problem(budget.tripped or f"does not render: {exc}") from None
        if budget.tripped:
            raise self._problem(budget.tripped)
        if len(out) > budget.max_size:
            raise self._problem(too_large(len(out), budget.max_size))
        return out

    def _problem(self, detail: str) -> TemplateProblem:
        return TemplateProblem(self.field, f"{self.field}: {detail}", detail=detail)


def too_large(size: int, limit: int) -> str:
    return f"renders to {size:,} characters, more than {limit:,} (TEMPLATE_MAX_SIZE)"


# Variables a template may use (in the order a person reads them); anything else is
# refused at save (campaigns.validation) and would render empty.
CONTEXT_PATH_ORDER = (
    ("member", "first_name"),
    ("member", "middle_name"),
    ("member", "last_name"),
    ("member", "full_name"),
    ("member", "email"),
    ("member", "username"),
    ("burst", "subject"),
    ("unsubscribe_url",),
)
CONTEXT_PATHS = frozenset(CONTEXT_PATH_ORDER)


class FastTemplate:
    """Text and plain `{{ a.b }}` variables only: rendered by joining strings.

    Most burst templates are like that, and Django's renderer costs ~25 µs per
    template per member; this gives the identical output in a fraction. Its only
    limit is the size, checked once per render."""

    def __init__(self, field: str, parts: list[str | tuple[str, ...]], autoescape: bool) -> None:
        self.field = field
        self.parts = parts
        self.autoescape = autoescape

    @classmethod
    def from_template(cls, template: BoundedTemplate, *, autoescape: bool) -> FastTemplate | None:
        parts: list[str | tuple[str, ...]] = []
        for node in template.nodelist:
            if isinstance(node, TextNode):
                parts.append(node.s)
            elif isinstance(node, VariableNode):
                expression = node.filter_expression
                var = expression.var
                lookups = getattr(var, "lookups", None)
                if expression.filters or not lookups or tuple(lookups) not in CONTEXT_PATHS:
                    return None
                parts.append(tuple(lookups))
            else:
                return None
        return cls(template.field, parts, autoescape)

    def render(self, context: dict[str, Any]) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = context
            for key in part:
                value = value.get(key, "") if isinstance(value, dict) else ""
            value = "" if value is None else str(value)
            out.append(escape(value) if self.autoescape else value)
        text = "".join(out)
        if len(text) > LIMITS.max_size:
            detail = too_large(len(text), LIMITS.max_size)
            raise TemplateProblem(self.field, f"{self.field}: {detail}", detail=detail)
        return text


@dataclass(frozen=True)
class CompiledBurst:
    subject: BoundedTemplate
    body: BoundedTemplate
    html_body: BoundedTemplate | None

    def __post_init__(self) -> None:
        fast = {
            "subject": FastTemplate.from_template(self.subject, autoescape=False),
            "body": FastTemplate.from_template(self.body, autoescape=False),
            "html_body": FastTemplate.from_template(self.html_body, autoescape=True)
            if self.html_body
            else None,
        }
        object.__setattr__(self, "_fast", fast)
        slow = not (fast["subject"] and fast["body"] and (fast["html_body"] or not self.html_body))
        object.__setattr__(self, "_slow", slow)

    def render(
        self, context: dict[str, Any], *, deadline: float | None = None
    ) -> tuple[str, str, str | None]:
        """Subject, text and HTML for one member; raises TemplateProblem.

        The parts share one deadline: TEMPLATE_RENDER_TIMEOUT from now, or `deadline`
        (a time.monotonic() value) for a caller that budgets several messages."""
        fast = self._fast
        if not self._slow:
            html = fast["html_body"].render(context) if self.html_body is not None else None
            return fast["subject"].render(context), fast["body"].render(context), html
        budget = Budget(deadline)
        token = _ACTIVE.set(budget)
        try:
            ctx = None
            if fast["subject"]:
                subject = fast["subject"].render(context)
            else:
                ctx = Context(context, autoescape=False)
                subject = self.subject.render_under(budget, ctx)
            if fast["body"]:
                text = fast["body"].render(context)
            else:
                text = self.body.render_under(budget, ctx or Context(context, autoescape=False))
            html = None
            if self.html_body is not None:
                if fast["html_body"]:
                    html = fast["html_body"].render(context)
                else:
                    html = self.html_body.render_under(budget, Context(context, autoescape=True))
        finally:
            _ACTIVE.reset(token)
        return subject, text, html


def compile_one(field: str, source: str, *, html: bool = False) -> BoundedTemplate:
    engine = HTML_ENGINE if html else TEXT_ENGINE
    try:
        return BoundedTemplate(field, engine.from_string(source))
    except Exception as exc:  # a syntax error, or anything else: never crash the caller
        detail = f"template error: {exc}"
        raise TemplateProblem(field, f"{field}: {detail}", detail=detail) from None


# --- the source as Django's lexer splits it -------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """One piece of a template's source: text, or one `{{ }}`, `{% %}` or `{# #}` tag.

    `verbatim`: text inside `{% verbatim %}` (rendered as it is, tags included);
    `comment`: inside `{% comment %}` (never rendered)."""

    raw: str
    kind: TokenType
    line: int
    verbatim: bool = False
    comment: bool = False

    @property
    def literal(self) -> bool:
        """Not template syntax: text Django will not read as tags."""
        return self.verbatim or self.comment


def template_pieces(source: str) -> list[Piece]:
    """The source cut exactly as Django's Lexer cuts it (verbatim blocks included),
    keeping each piece's raw text and line."""
    lexer = Lexer(source)
    pieces: list[Piece] = []
    line, in_tag, in_comment = 1, False, False
    for raw in tag_re.split(source):
        if raw:
            in_verbatim = bool(lexer.verbatim)
            token = lexer.create_token(raw, None, line, in_tag)
            kind = token.token_type
            name = token.contents.split(maxsplit=1)[0] if kind == TokenType.BLOCK and token.contents else ""
            if name == "endcomment":
                in_comment = False
            verbatim = in_verbatim and kind == TokenType.TEXT
            pieces.append(Piece(raw, kind, line, verbatim=verbatim, comment=in_comment and not verbatim))
            if name == "comment":
                in_comment = True
            line += raw.count("\n")
        in_tag = not in_tag
    return pieces


def is_html_document(html: str) -> bool:
    """Whether an HTML body is a whole document (else the engine wraps it in one)."""
    return "<html" in html[:500].lower()


# --- HTML bodies: CSS inlined, a text part generated -------------------------------------------------
#
# Both run once per compile on the template source, never per member. The HTML tools
# must not see (or mangle) Django's tags: each tag is swapped for a placeholder
# first and put back after, and the result is used only if every block tag came back
# exactly once and in its order.

# Elements whose content an HTML parser keeps as text: a comment placeholder there
# would be text too.
_RAW_TEXT_ELEMENTS = frozenset(
    {"title", "textarea", "style", "script", "xmp", "iframe", "noembed", "noframes", "noscript"}
)


class _TextPositions(HTMLParser):
    """Finds the placeholders that stand where text goes (not in a tag, an attribute,
    a comment or a raw-text element)."""

    def __init__(self, pattern: re.Pattern) -> None:
        super().__init__(convert_charrefs=True)
        self.pattern = pattern
        self.raw_depth = 0
        self.found: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _RAW_TEXT_ELEMENTS:
            self.raw_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _RAW_TEXT_ELEMENTS and self.raw_depth:
            self.raw_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self.raw_depth:
            self.found.update(self.pattern.findall(data))


class _Shielded:
    """An HTML template whose Django tags are swapped for placeholders."""

    def __init__(self, source: str) -> None:
        prefix = "tplslot"
        while prefix in source.lower():
            prefix += "q"
        self.pattern = re.compile(rf"{prefix}\d+x")
        self.tags: dict[str, str] = {}
        self.blocks: list[str] = []  # block tags' placeholders, in order
        parts = []
        for piece in template_pieces(source):
            if piece.kind == TokenType.TEXT:
                parts.append(piece.raw)
                continue
            key = f"{prefix}{len(self.tags)}x"
            self.tags[key] = piece.raw
            if piece.kind == TokenType.BLOCK:
                self.blocks.append(key)
            parts.append(key)
        self.html = "".join(parts)

    def with_comments_in_text(self) -> str:
        """Placeholders where text goes become HTML comments: a parser never moves a
        comment (text between table rows, it moves out of the table)."""
        finder = _TextPositions(self.pattern)
        finder.feed(self.html)
        finder.close()
        return self.pattern.sub(
            lambda m: f"<!--{m.group()}-->" if m.group() in finder.found else m.group(), self.html
        )

    def restore(self, html: str, *, all_tags: bool = True) -> str | None:
        """The tool's output with the tags back; None if a block tag was lost, doubled
        or moved out of order, or (`all_tags`) any other tag was lost."""
        seen = self.pattern.findall(html)
        blocks = [key for key in seen if key in self.blocks]
        if blocks != self.blocks or (all_tags and set(seen) != set(self.tags)):
            return None
        html = re.sub(rf"<!--({self.pattern.pattern})-->", lambda m: self.tags[m.group(1)], html)
        return self.pattern.sub(lambda m: self.tags[m.group()], html)


_INLINER = css_inline.CSSInliner(
    keep_style_tags=True,  # @media and :hover rules cannot be inlined; clients that read <style> keep them
    keep_link_tags=True,
    load_remote_stylesheets=False,  # never fetch a URL a template names
)


def inline_css(html: str) -> str:
    """`html` with the rules of its `<style>` blocks copied into `style` attributes
    (many mail clients ignore `<style>`); unchanged without `<style>`, or if the
    template's tags could not be kept intact."""
    if "<style" not in html.lower():
        return html
    shielded = _Shielded(html)
    source = shielded.with_comments_in_text()
    try:
        inlined = _INLINER.inline(source) if is_html_document(html) else _INLINER.inline_fragment(source, "")
    except (css_inline.InlineError, ValueError):
        return html
    return shielded.restore(inlined) or html


class _TextMaker(html2text.HTML2Text):
    """html2text for an email's text part: plain text, not Markdown (no escapes, no
    emphasis marks, no images), links as "text (url)", table cells side by side."""

    def __init__(self) -> None:
        super().__init__(bodywidth=0)
        self.ignore_emphasis = True
        self.ignore_images = True
        self.ignore_tables = True
        self.unicode_snob = True
        self.tag_callback = _TextMaker._tag
        self.open_links: list[tuple[str, int]] = []

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        super().handle_data(data, entity_char=True)  # entity_char: no Markdown escaping

    @staticmethod
    def _tag(maker: _TextMaker, tag: str, attrs: dict[str, str | None], start: bool) -> bool:
        if tag in ("td", "th") and not start:
            maker.o("  ")
            return False
        if tag != "a":
            return False
        if start:
            maker.open_links.append(((attrs.get("href") or "").strip(), len(maker.outtextlist)))
            return True
        href, at = maker.open_links.pop() if maker.open_links else ("", 0)
        shown = href.removeprefix("mailto:")
        text = "".join(maker.outtextlist[at:]).strip()
        if shown and not href.startswith("#") and shown != text:
            maker.o(f" ({shown})")
        return True


def html_to_text(html: str) -> str:
    """A text template made from an HTML template (its Django tags kept as they are).

    Raises TemplateProblem when the tags cannot be kept (a block tag inside an HTML tag)."""
    shielded = _Shielded(html)
    text = _TextMaker().handle(shielded.html)
    text = re.sub(r"[ \t\u00a0]+$", "", text, flags=re.MULTILINE)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    # Variables in attributes other than href (a title, a style) have no place in text.
    restored = shielded.restore(text, all_tags=False)
    if restored is None:
        detail = (
            "the text part cannot be generated from the HTML body (a block tag inside an HTML "
            "tag would be lost): write a text body"
        )
        raise TemplateProblem("html_body", f"html_body: {detail}", detail=detail)
    return restored


def compile_burst(*, subject: str, body: str, html_body: str = "") -> CompiledBurst:
    """The burst's parts compiled. Without a text body the text part is generated
    from the HTML body; the HTML body's `<style>` CSS is inlined. Both happen here,
    once per compile, so that the engine gets templates ready to render."""
    subject_template = compile_one("subject", subject)
    generate_text = bool(html_body) and not body.strip()
    text = None if generate_text else compile_one("body", body)
    html = compile_one("html_body", html_body, html=True) if html_body else None
    if html is not None:
        inlined = inline_css(html_body)
        if inlined != html_body:
            html = compile_one("html_body", inlined, html=True)
    if text is None:
        # A problem of the generated text is one of the HTML body it came from.
        text = BoundedTemplate("body", compile_one("html_body", html_to_text(html_body)).template)
    return CompiledBurst(subject=subject_template, body=text, html_body=html)


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
# Long-ish but realistic values in every field.
FILLED_MEMBER = member_context(
    first_name="Maximiliane-Josephine",
    middle_name="Anne-Sophie Élise",
    last_name="van der Westhuizen-Okonkwo",
    email="maximiliane.van.der.westhuizen-okonkwo@members.example.org",
    username="maximiliane.vanderwesthuizen",
    unsubscribe_url="https://newsletter.example.org/unsubscribe/1234567.AbCdEfGhIjKlMnOpQrStUvWx/",
)


def check_templates(*, subject: str, body: str, html_body: str = "") -> CompiledBurst:
    """Compile, then render for a member whose optional fields are all empty and for
    one whose fields are all filled; a failure or a limit names the field."""
    compiled = compile_burst(subject=subject, body=body, html_body=html_body)
    for member, which in ((EMPTY_MEMBER, "empty"), (FILLED_MEMBER, "filled")):
        try:
            compiled.render(dict(member, burst={"subject": subject}))
        except TemplateProblem as exc:
            raise TemplateProblem(
                exc.field,
                f"{exc.field}: for a member with every optional field {which}: {exc.detail}",
                detail=exc.detail,
            ) from None
    return compiled
