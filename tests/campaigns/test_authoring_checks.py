"""Authoring checks (SPEC section 11): broken or dangerous templates are refused at
save and at send, naming the field, the line and the offending text; correct
templates, CSS and JSON braces included, pass untouched; the warnings the templates
alone show (no unsubscribe link)."""

from __future__ import annotations

import pytest

from campaigns import selectors, services
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from campaigns.validation import ALLOWED_VARIABLES, Check, burst_checks, burst_validate
from common.errors import InvalidInput
from tests.campaigns.bursts import drive
from tests.factories import BurstFactory, MemberFactory

UNSUBSCRIBE = "\n\nUnsubscribe: {{ unsubscribe_url }}"
VALID = {
    "subject": "Hello",
    "body": "Hi {{ member.first_name|default:'friend' }}" + UNSUBSCRIBE,
    "html_body": "",
}

# (field, source, line, snippet, words of the message)
BROKEN = {
    # broken tags: Django leaves them as text, and they would go out literally
    "missing closing brace": (
        "subject",
        "{{ member.first_name|default:'you' }",
        1,
        "{{ member.first_name|default:'you' }",
        "“{{” is not closed",
    ),
    "space between opening braces": (
        "body",
        "Dear { { member.first_name } },",
        1,
        "{ { member.first_name } },",
        "without a space",
    ),
    "unclosed variable on line 3": (
        "body",
        "Dear member,\n\nsee you {{ member.first_name on Friday.",
        3,
        "{{ member.first_name on Friday.",
        "“{{” is not closed",
    ),
    "variable split over two lines": (
        "html_body",
        "<p>Dear {{ member.first_name\n}}</p>",
        1,
        "{{ member.first_name",
        "on the same line",
    ),
    "unclosed block tag": (
        "body",
        "Hi\n{% if member.first_name }friend",
        2,
        "{% if member.first_name }friend",
        "“{%” is not closed",
    ),
    "stray closing braces": (
        "body",
        "Hi\nDear member.first_name }},",
        2,
        "Dear member.first_name }}",
        "“}}” closes nothing",
    ),
    "stray closing block": (
        "body",
        "Hello if member.first_name %}friend",
        1,
        "Hello if member.first_name %}",
        "“%}”",
    ),
    "one brace too many": (
        "subject",
        "Hi {{ member.first_name }}}",
        1,
        "{{ member.first_name }}}",
        "one brace too many",
    ),
    "spaced closing braces": ("body", "Dear member.first_name } }", 1, "Dear member.first_name } }", "“} }”"),
    # Django's own syntax errors, with their line
    "unclosed if": (
        "body",
        "Hi\n\n{% if member.first_name %}friend",
        3,
        "{% if member.first_name %}",
        "Unclosed tag",
    ),
    "unknown filter": (
        "body",
        "Hi {{ member.first_name|shout }}",
        1,
        "{{ member.first_name|shout }}",
        "Invalid filter",
    ),
    "tag outside the whitelist": (
        "html_body",
        "<p>Hi</p>\n{% load static %}",
        2,
        "{% load static %}",
        "The tags a burst can use are",
    ),
    "endif without if": ("html_body", "<p>{% endif %}</p>", 1, "{% endif %}", "template error"),
    # variables outside the context
    "member.password": (
        "body",
        "Your password: {{ member.password }}",
        1,
        "{{ member.password }}",
        "member.password",
    ),
    "user.email": ("html_body", "<p>\n{{ user.email }}</p>", 2, "{{ user.email }}", "user.email"),
    "settings in a filter argument": (
        "subject",
        "{{ member.first_name|default:settings.SECRET_KEY }}",
        1,
        "{{ member.first_name|default:settings.SECRET_KEY }}",
        "settings.SECRET_KEY",
    ),
    "in a for loop's sequence": (
        "body",
        "{% for c in member.deliveries %}{{ c }}{% endfor %}",
        1,
        "{% for c in member.deliveries %}",
        "member.deliveries",
    ),
    "loop variable used after the loop": (
        "body",
        "{% for c in member.first_name|make_list %}{{ c }}{% endfor %}\n{{ c }}",
        2,
        "{{ c }}",
        "“c”",
    ),
    "in an if": (
        "body",
        "{% if member.is_staff %}Staff{% endif %}",
        1,
        "{% if member.is_staff %}",
        "member.is_staff",
    ),
    "in a with": (
        "body",
        "{% with key=burst.sender %}{{ key }}{% endwith %}",
        1,
        "{% with key=burst.sender %}",
        "burst.sender",
    ),
    "the whole member": ("body", "{{ member }}", 1, "{{ member }}", "“member”"),
    # dangerous HTML
    "script": ("html_body", "<p>Hi</p>\n<script>alert(1)</script>", 2, "<script>", "<script> is not allowed"),
    "script in capitals with a source": (
        "html_body",
        "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
        1,
        "<SCRIPT SRC=https://evil.example/x.js>",
        "<script>",
    ),
    "iframe": (
        "html_body",
        '<iframe src="https://evil.example/"></iframe>',
        1,
        '<iframe src="https://evil.example/">',
        "<iframe>",
    ),
    "object": ("html_body", '<object data="movie.swf"></object>', 1, '<object data="movie.swf">', "<object>"),
    "embed": ("html_body", '<embed src="movie.swf">', 1, '<embed src="movie.swf">', "<embed>"),
    "form": (
        "html_body",
        '<form action="https://evil.example/"><input name="p"></form>',
        1,
        '<form action="https://evil.example/">',
        "<form>",
    ),
    "onerror": (
        "html_body",
        '<img src="logo.png" onerror="alert(1)">',
        1,
        '<img src="logo.png" onerror="alert(1)">',
        "onerror=",
    ),
    "onload on body": (
        "html_body",
        "<html><body onload=alert(1)>\n<p>Hi</p></body></html>",
        1,
        "<body onload=alert(1)>",
        "onload=",
    ),
    "javascript href": (
        "html_body",
        '<a href="javascript:alert(1)">Read</a>',
        1,
        '<a href="javascript:alert(1)">',
        "javascript:",
    ),
    "entity-encoded javascript": (
        "html_body",
        '<a href="&#106;avascript&#58;alert(1)">Read</a>',
        1,
        '<a href="&#106;avascript&#58;alert(1)">',
        "javascript:",
    ),
    "javascript with a tab and a named colon": (
        "html_body",
        '<p>x</p>\n<a href=" JaVa&#x09;ScRiPt&colon;alert(1)">Read</a>',
        2,
        '<a href=" JaVa&#x09;ScRiPt&colon;alert(1)">',
        "javascript:",
    ),
    "javascript in svg xlink:href": (
        "html_body",
        '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
        1,
        '<a xlink:href="javascript:alert(1)">',
        "xlink:href",
    ),
    "javascript in a style": (
        "html_body",
        '<div style="background:url(java script:alert(1))">x</div>',
        1,
        '<div style="background:url(java script:alert(1))">',
        "style=",
    ),
    "script assembled by a template comment": (
        "html_body",
        "<p>Hi</p><scr{# #}ipt>alert(1)</script>",
        None,
        "<script>",
        "<script>",
    ),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_or_dangerous_template_is_refused_naming_its_field_line_and_snippet(name):
    field, source, line, snippet, words = BROKEN[name]

    with pytest.raises(InvalidInput) as caught:
        burst_validate(**{**VALID, field: source})

    problem = caught.value
    assert (problem.field, problem.line, problem.snippet) == (field, line, snippet)
    assert words in problem.message
    where = f"{field}, line {line}" if line else field
    assert problem.message.startswith(f"{where}, at “{snippet}”: ")


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(BROKEN))
def test_saving_one_is_refused_and_stores_nothing(name):
    field, source, *_ = BROKEN[name]
    with pytest.raises(InvalidInput) as caught:
        services.burst_create(**{**VALID, field: source})
    assert caught.value.field == field
    assert not EmailBurst.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name", ["missing closing brace", "member.password", "script", "javascript href", "unclosed if"]
)
def test_sending_one_that_reached_the_database_is_refused_before_anything_is_created(name):
    field, source, line, snippet, _words = BROKEN[name]
    burst = services.burst_create(**VALID, recipient_ids=[MemberFactory().pk])
    EmailBurst.objects.filter(pk=burst.pk).update(**{field: source})

    with pytest.raises(InvalidInput) as caught:
        services.burst_send(burst_id=burst.pk)

    assert (caught.value.field, caught.value.line, caught.value.snippet) == (field, line, snippet)
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT
    assert not Delivery.objects.exists()


def test_the_message_names_every_variable_a_burst_can_use():
    with pytest.raises(InvalidInput) as caught:
        burst_validate(**{**VALID, "body": "{{ member.password }}"})
    assert ALLOWED_VARIABLES in caught.value.message
    for name in (
        "member.first_name",
        "member.middle_name",
        "member.last_name",
        "member.full_name",
        "member.email",
        "member.username",
        "burst.subject",
        "unsubscribe_url",
    ):
        assert name in ALLOWED_VARIABLES


def test_every_error_is_listed_not_only_the_first():
    checks = burst_checks(
        subject="{{ member.first_name }",
        body="{{ member.password }}\n{{ member.is_staff }}",
        html_body="<script>x</script>",
        from_name="",
    )
    assert [(c.level, c.field, c.line, c.snippet) for c in checks] == [
        ("error", "subject", 1, "{{ member.first_name }"),
        ("error", "body", 1, "{{ member.password }}"),
        ("error", "body", 2, "{{ member.is_staff }}"),
        ("error", "html_body", 1, "<script>"),
    ]


def test_a_check_as_a_dict_has_every_field():
    [check] = [
        c for c in burst_checks(subject="Hi", body="{{ member.password }}", html_body="", from_name="")
    ]
    assert check.as_dict() == {
        "level": "error",
        "field": "body",
        "message": check.message,
        "line": 1,
        "snippet": "{{ member.password }}",
        "count": None,
        "example": "",
    }


# --- correct templates pass untouched ---------------------------------------------------------------

# (field, source)
CORRECT = {
    "default filter": ("subject", "News for {{ member.first_name|default:'you' }}"),
    "JSON-ish text": ("body", 'Your data: {"name": "{{ member.first_name }}", "tags": {"a": [1, 2]} }'),
    "CSS braces in a style block": (
        "html_body",
        "<style>\np { color: red }\n@media (max-width: 600px) { p { font-size: 18px } a{width:100%}}\n</style>\n<p>Hi</p>",
    ),
    "inline style with percentages": ("html_body", '<p style="width:100%">50% off {today}</p>'),
    "verbatim block": ("body", "{% verbatim %}Write {{ like }} this{% endverbatim %} {{ member.email }}"),
    "verbatim with a broken-looking tag": ("body", "{% verbatim %}{{ x }{% endverbatim %} ok"),
    "comment block": ("body", "{% comment %}{{ draft } not sent{% endcomment %}Hi"),
    "templatetag": (
        "body",
        "{% templatetag openvariable %} member.first_name {% templatetag closevariable %}",
    ),
    "braces in prose": ("body", "Sets like {1, 2} and {} are fine; a lone } too."),
    "for loop with forloop": (
        "body",
        "{% for c in member.first_name|make_list %}{{ forloop.counter }}={{ c|upper }} {% endfor %}",
    ),
    "with and if": (
        "body",
        "{% with n=member.full_name %}{% if n %}Dear {{ n }}{% else %}Hello{% endif %}{% endwith %}",
    ),
    "cycle as": ("body", "{% cycle 'odd' 'even' as row %}{{ row }}"),
    "first letter by index": ("subject", "{{ member.first_name.0 }}. {{ member.last_name }}"),
    "links and images": (
        "html_body",
        '<p><a href="https://example.org/?a=1&amp;b=2">Site</a> <a href="{{ unsubscribe_url }}">Leave</a>'
        ' <a href="mailto:board@example.org">Write</a></p><img src="https://example.org/logo.png" alt="Logo">',
    ),
    "a table with a block tag between rows": (
        "html_body",
        "<table>\n{% if member.last_name %}<tr><td>{{ member.last_name }}</td></tr>{% endif %}\n</table>",
    ),
    "every variable": (
        "body",
        "{{ member.first_name }} {{ member.middle_name }} {{ member.last_name }} {{ member.full_name }} "
        "{{ member.email }} {{ member.username }} {{ burst.subject }} {{ unsubscribe_url }}",
    ),
}


@pytest.mark.parametrize("name", list(CORRECT))
def test_a_correct_template_has_no_error(name):
    field, source = CORRECT[name]
    errors = [c for c in burst_checks(**{**VALID, field: source, "from_name": ""}) if c.is_error]
    assert errors == []


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(CORRECT))
def test_a_correct_template_is_saved_and_sent_untouched(name, engine):
    field, source = CORRECT[name]
    member = MemberFactory(first_name="Ada", last_name="Lovelace")
    burst = services.burst_create(
        **{**VALID, field: source}, recipient_ids=[member.pk], sender="news@example.org"
    )

    assert getattr(EmailBurst.objects.get(pk=burst.pk), field) == source
    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    assert Delivery.objects.get(burst=burst).status == DeliveryStatus.SENT
    assert engine.message_count == 1


# --- warnings the templates alone show ------------------------------------------------------------------


def warnings_of(**fields) -> list[Check]:
    return [c for c in burst_checks(**{**VALID, "from_name": "", **fields}) if not c.is_error]


def test_no_unsubscribe_link_is_a_warning_saying_the_footer_adds_one():
    [warning] = warnings_of(body="Hello", html_body="<p>Hello</p>")
    assert warning.level == "warning" and warning.field == "body"
    assert "footer adds one" in warning.message
    burst_validate(subject="Hi", body="Hello", html_body="<p>Hello</p>")  # a warning never refuses


@pytest.mark.parametrize(
    "fields",
    [
        {"body": "Leave: {{ unsubscribe_url }}"},
        {"body": "Hello", "html_body": '<a href="{{ unsubscribe_url }}">Leave</a>'},
        {"body": "", "html_body": '<a href="{{ unsubscribe_url }}">Leave</a>'},
    ],
)
def test_an_unsubscribe_link_in_either_body_means_no_warning(fields):
    assert warnings_of(**fields) == []


def test_an_html_only_burst_without_the_link_is_warned_on_the_html_body():
    [warning] = warnings_of(body="", html_body="<p>Hello</p>")
    assert warning.field == "html_body"


def test_no_warning_is_given_while_there_are_errors():
    checks = burst_checks(subject="Hi", body="{{ member.password }}", html_body="", from_name="")
    assert [c.level for c in checks] == ["error"]


# --- the engine stays the last wall -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_stored_template_with_an_unknown_variable_still_renders_it_empty():
    burst = BurstFactory(subject="S", body="[{{ member.password }}]", html_body="<p>[{{ user }}]</p>")
    rendered = selectors.burst_preview(burst_id=burst.pk)
    assert (rendered.text, rendered.html) == ("[]", "<p>[]</p>")
