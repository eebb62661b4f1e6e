"""Authoring in the admin (SPEC section 11): errors on their field with line and
snippet, an HTML-only burst, the rich-text editor with its raw HTML mode, and the
warnings (empty merge fields counted in the database, no unsubscribe link) in
pre-flight and on the send confirmation page."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import selectors
from campaigns.models import BurstStatus, Delivery, EmailBurst
from tests.factories import BurstFactory, MemberFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/campaigns/emailburst/"
LINK = "\n{{ unsubscribe_url }}"


def page_url(burst: EmailBurst, action: str = "change") -> str:
    return f"{LIST}{burst.pk}/{action}/"


def compose(**fields) -> dict:
    data = {
        "name": "",
        "subject": "Hello {{ member.first_name|default:'you' }}",
        "body": "Hi" + LINK,
        "html_body": "",
        "sender": "news@example.test",
        "from_name": "News",
        "reply_to": "",
        "attachments-TOTAL_FORMS": "0",
        "attachments-INITIAL_FORMS": "0",
        "attachments-MIN_NUM_FORMS": "0",
        "attachments-MAX_NUM_FORMS": "1000",
    }
    data.update(fields)
    return data


def field_errors(response) -> dict[str, list[str]]:
    form = response.context["adminform"].form
    return {name: [str(e) for e in errors] for name, errors in form.errors.items()}


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- errors on their field ----------------------------------------------------------------------------


def test_the_missing_brace_of_the_report_is_shown_on_the_subject_with_line_and_snippet(root_client):
    response = root_client.post(f"{LIST}add/", compose(subject="{{ member.first_name|default:'you' }"))

    assert response.status_code == 200
    [error] = field_errors(response)["subject"]
    assert error.startswith("Line 1: This looks like a broken variable")
    assert error.endswith("— “{{ member.first_name|default:'you' }”")
    assert not EmailBurst.objects.exists()


def test_each_error_is_shown_on_its_own_field(root_client):
    response = root_client.post(
        f"{LIST}add/",
        compose(
            body="Hi {{ member.first_name }}\nYour password: {{ member.password }}" + LINK,
            html_body="<p>Hi</p>\n<p>x</p>\n<script>alert(1)</script>",
        ),
    )
    errors = field_errors(response)
    assert errors["body"] == [
        "Line 2: “member.password” is not a variable a burst can use (it would render empty); the ones "
        "you can use are member.first_name, member.middle_name, member.last_name, member.full_name, "
        "member.email, member.username, burst.subject, unsubscribe_url. — “{{ member.password }}”"
    ]
    assert errors["html_body"] == ["Line 3: <script> is not allowed in an email's HTML. — “<script>”"]
    html = response.content.decode()
    assert "&lt;script&gt; is not allowed" in html and "<script>alert(1)" not in html


def test_an_html_only_burst_can_be_saved_and_neither_body_cannot(root_client):
    response = root_client.post(
        f"{LIST}add/", compose(body="", html_body='<p>Hi</p><a href="{{ unsubscribe_url }}">x</a>')
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert EmailBurst.objects.get().body == ""

    response = root_client.post(f"{LIST}add/", compose(body="", html_body=""))
    assert response.status_code == 200
    assert field_errors(response)["body"] == ["Body or html_body is required"]


def test_sending_a_broken_burst_is_refused_with_a_message_naming_field_line_and_snippet(root_client):
    burst = BurstFactory(
        subject="{{ member.first_name|default:'you' }", recipients=MemberFactory.create_bulk(2)
    )

    response = root_client.post(page_url(burst, "send"), follow=True)

    assert any(
        m.startswith("subject, line 1, at “{{ member.first_name|default:'you' }”: This looks like a broken")
        for m in messages_of(response)
    )
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT
    assert not Delivery.objects.exists()


# --- pre-flight ---------------------------------------------------------------------------------------------


def test_preflight_no_longer_calls_the_broken_subject_ready(root_client):
    burst = BurstFactory(
        subject="{{ member.first_name|default:'you' }", recipients=MemberFactory.create_bulk(3)
    )

    page = root_client.get(page_url(burst, "preflight"))

    html = page.content.decode()
    assert "Ready to send." not in html and "Fix the template before sending." in html
    [error] = page.context["preflight"].errors
    assert (error.field, error.line, error.snippet) == ("subject", 1, "{{ member.first_name|default:'you' }")
    assert "{{ member.first_name|default:&#x27;you&#x27; }" in html
    assert page.context["preflight"].to_send == 3  # the counts are still shown


def test_preflight_counts_the_recipients_without_a_first_name_with_an_example_and_the_hint(root_client):
    named = MemberFactory.create_bulk(3, prefix="named", first_name="Ada")
    nameless = MemberFactory.create_bulk(4, prefix="nameless", first_name="")
    unsubscribed = MemberFactory(first_name="", unsubscribed_at="2024-01-01T00:00:00Z")
    burst = BurstFactory(
        subject="News",
        body="Hello {{ member.first_name }}, see you on Friday." + LINK,
        recipients=[*named, *nameless, unsubscribed],
    )

    page = root_client.get(page_url(burst, "preflight"))

    [warning] = page.context["preflight"].warnings
    assert (warning.level, warning.field, warning.count, warning.line) == ("warning", "body", 4, 1)
    assert warning.example == "Hello , see you on Friday."
    assert warning.snippet == "{{ member.first_name }}"
    assert '{{ member.first_name|default:"friend" }}' in warning.message
    assert warning.message.startswith("4 recipients have no first name")
    html = page.content.decode()
    assert "Ready to send." in html  # a warning does not stop the send
    assert "Hello , see you on Friday." in html and 'data-check-count="4"' in html


def test_an_html_only_burst_gets_the_warning_with_a_text_example():
    nameless = MemberFactory.create_bulk(2, prefix="html", first_name="")
    burst = BurstFactory(
        subject="News",
        body="",
        html_body='<h1>News</h1>\n<p>Hello <b>{{ member.first_name }}</b>, welcome.</p>\n<a href="{{ unsubscribe_url }}">x</a>',
        recipients=nameless,
    )
    [warning] = selectors.burst_empty_field_warnings(burst=burst)
    assert (warning.field, warning.count, warning.line) == ("html_body", 2, 2)
    assert warning.example == "Hello , welcome."


def test_a_field_covered_by_default_or_if_is_not_warned_about(root_client):
    nameless = MemberFactory.create_bulk(2, prefix="nn", first_name="", last_name="")
    burst = BurstFactory(
        subject="Hi {{ member.first_name|default:'friend' }}",
        body="{% if member.last_name %}Dear {{ member.last_name }}{% endif %}" + LINK,
        recipients=nameless,
    )
    assert root_client.get(page_url(burst, "preflight")).context["preflight"].warnings == []


def test_the_empty_fields_are_counted_in_one_query_whatever_the_audience():
    def queries_for(count: int) -> int:
        members = MemberFactory.create_bulk(count, prefix=f"q{count}-", first_name="", last_name="")
        burst = BurstFactory(
            subject="{{ member.first_name }}",
            body="{{ member.last_name }} {{ member.full_name }} {{ member.middle_name }}" + LINK,
            recipients=members,
        )
        with CaptureQueriesContext(connection) as captured:
            warnings = selectors.burst_empty_field_warnings(burst=burst)
        assert [w.count for w in warnings] == [count] * 4
        counting = [q for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
        assert len(counting) == 1
        return len(captured.captured_queries)

    # the audience's own look-ups, one count, one example member per field: not one per member
    assert queries_for(3) == queries_for(60)


def test_preflight_warns_when_no_body_links_to_unsubscribe(root_client):
    burst = BurstFactory(subject="Hi", body="Hello", html_body="<p>Hello</p>", recipients=[MemberFactory()])
    [warning] = root_client.get(page_url(burst, "preflight")).context["preflight"].warnings
    assert "footer adds one" in warning.message


# --- the send confirmation page ------------------------------------------------------------------------------


def test_the_send_confirmation_page_shows_the_warnings(root_client):
    nameless = MemberFactory.create_bulk(2, prefix="nn", first_name="")
    burst = BurstFactory(subject="Hello {{ member.first_name }}!", body="Hi", recipients=nameless)

    page = root_client.get(page_url(burst, "send"))

    html = page.content.decode()
    assert 'id="confirm-warnings"' in html
    assert "2 recipients have no first name" in html and "Hello !" in html
    assert "footer adds one" in html
    assert 'id="confirm-errors"' not in html


def test_the_send_confirmation_page_shows_the_errors(root_client):
    burst = BurstFactory(subject="Hi", body="{{ member.password }}", recipients=[MemberFactory()])
    html = root_client.get(page_url(burst, "send")).content.decode()
    assert 'id="confirm-errors"' in html and "member.password" in html


def test_other_confirmations_show_no_checks(root_client):
    burst = BurstFactory(
        subject="Hello {{ member.first_name }}",
        status=BurstStatus.SENDING,
        recipients=[MemberFactory(first_name="")],
    )
    page = root_client.get(page_url(burst, "pause"))
    assert page.status_code == 200
    assert page.context["warnings"] == [] and page.context["errors"] == []


# --- the editor ---------------------------------------------------------------------------------------------


def editor_of(html: str) -> str:
    match = re.search(r'<div class="emailer-html-editor".*?data-editor-pane="raw".*?</textarea>', html, re.S)
    assert match, "the HTML body editor is on the page"
    return match.group()


def test_a_simple_html_body_opens_in_the_rich_text_editor(root_client):
    burst = BurstFactory(subject="Hi", html_body="<p>Hi <strong>{{ member.first_name }}</strong></p>")
    editor = editor_of(root_client.get(page_url(burst)).content.decode())

    assert 'data-mode="rich"' in editor and "<trix-editor" in editor
    assert 'type="hidden" name="html_body" id="wysiwyg-html_body"' in editor
    assert re.search(r'<textarea name=""[^>]*id="id_html_body"', editor)


@pytest.mark.parametrize(
    "html",
    [
        "<table><tr><td>Hi</td></tr></table>",
        "<style>p { color: red }</style><p>Hi</p>",
        '<p class="lead">Hi</p>',
        "<!-- note --><p>Hi</p>",
        "{% if member.first_name %}<p>Hi</p>{% endif %}",
        '<img src="https://example.org/logo.png" alt="">',
    ],
)
def test_html_the_rich_text_editor_would_damage_opens_as_raw_html(root_client, html):
    burst = BurstFactory(subject="Hi", html_body=html)
    editor = editor_of(root_client.get(page_url(burst)).content.decode())

    assert 'data-mode="raw"' in editor
    assert 'type="hidden" name="" id="wysiwyg-html_body" value=""' in editor  # trix gets nothing to damage
    assert re.search(r'<textarea name="html_body"[^>]*id="id_html_body"', editor)


def test_the_editor_loads_its_script_and_style_from_static_files(root_client):
    html = root_client.get(f"{LIST}add/").content.decode()
    assert "campaigns/admin/html_body_editor.js" in html and "unfold/forms/js/trix/trix.js" in html
    assert "campaigns/admin/html_body_editor.css" in html
    assert "onclick=" not in editor_of(html)


# --- the editor in a browser --------------------------------------------------------------------------------

RAW_HTML = (
    "<style>p { color: #333333 }</style>\n"
    "<table><tr><td>{% if member.first_name %}Dear {{ member.first_name }}{% endif %}</td></tr></table>\n"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
)


def open_editor(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("() => document.querySelector('trix-editor')?.editor !== undefined")
    page.wait_for_function("() => document.querySelector('[data-html-editor]').dataset.ready !== undefined")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_rich_text_editor_and_raw_html_in_a_browser(page, superuser, live_server):
    from tests.admin.browser import login, screenshot
    from tests.admin.csp_watch import csp_violations, watch_csp

    watch_csp(page)
    login(page, "root", "root-pass-1234")

    # A new burst: the rich-text editor, template tags typed as text.
    open_editor(page, f"{LIST}add/")
    assert page.locator("[data-html-editor]").get_attribute("data-mode") == "rich"
    page.fill("input[name=subject]", "Spring news")
    page.click("trix-editor")
    page.keyboard.type("Hello {{ member.first_name }}, see you {% if member.last_name %}soon{% endif %}")
    page.click("[data-editor-mode=raw]")
    raw = page.locator("textarea[name=html_body]")
    assert (
        "Hello {{ member.first_name }}, see you {% if member.last_name %}soon{% endif %}" in raw.input_value()
    )
    page.click("[data-editor-mode=rich]")  # what trix wrote goes back into trix
    assert page.locator("[data-html-editor]").get_attribute("data-mode") == "rich"
    assert page.locator("[data-editor-note]").inner_text() == ""
    page.click("[data-editor-mode=raw]")

    # Raw HTML the rich-text editor cannot hold stays raw, and is saved exactly as typed.
    raw.fill(RAW_HTML)
    page.click("[data-editor-mode=rich]")
    assert page.locator("[data-html-editor]").get_attribute("data-mode") == "raw"
    assert "would drop" in page.locator("[data-editor-note]").inner_text()
    screenshot(page, "authoring-raw-html-kept")
    page.click("button[name=_continue]")
    page.wait_for_url("**/change/**")
    burst = EmailBurst.objects.get()
    # (browsers post a textarea's line ends as CRLF)
    assert burst.html_body.replace("\r\n", "\n") == RAW_HTML and burst.body == ""

    # Opened again, it opens as raw HTML and a save without changes keeps it to the byte.
    open_editor(page, page_url(burst))
    assert page.locator("[data-html-editor]").get_attribute("data-mode") == "raw"
    assert page.locator("textarea[name=html_body]").input_value() == RAW_HTML
    page.click("button[name=_continue]")
    page.wait_for_url("**/change/**")
    assert EmailBurst.objects.get().html_body.replace("\r\n", "\n") == RAW_HTML

    # Simple HTML opens in the rich-text editor and is saved untouched when not edited.
    simple = '<p>Hi <strong>{{ member.first_name }}</strong>, <a href="{{ unsubscribe_url }}">leave</a></p>'
    EmailBurst.objects.filter(pk=burst.pk).update(html_body=simple)
    open_editor(page, page_url(burst))
    assert page.locator("[data-html-editor]").get_attribute("data-mode") == "rich"
    assert "Hi {{ member.first_name }}, leave" in page.locator("trix-editor").inner_text()
    screenshot(page, "authoring-rich-text")
    page.click("button[name=_continue]")
    page.wait_for_url("**/change/**")
    assert EmailBurst.objects.get().html_body == simple

    # Edited as rich text: what trix writes is saved, the template tags and the link intact.
    open_editor(page, page_url(burst))
    page.click("trix-editor")
    page.keyboard.press("End")
    page.keyboard.type(" Bye {{ member.last_name }}")
    page.click("button[name=_continue]")
    page.wait_for_url("**/change/**")
    saved = EmailBurst.objects.get().html_body
    assert "Bye {{ member.last_name }}" in saved and "{{ member.first_name }}" in saved
    assert 'href="{{ unsubscribe_url }}"' in saved

    assert csp_violations(page) == []
    assert page.js_errors == []
