"""HTML-only bursts (SPEC section 11): without a text body the text part is made
from the HTML (html2text), `<style>` CSS is inlined into the HTML part (css-inline),
both once per compile with the template's tags intact; the messages have no MIME
defect and SpamAssassin's local rules score them at most 0.5."""

from __future__ import annotations

import mailbox
import os
import re
import shutil
import subprocess

import pytest

from campaigns import selectors, services, templating
from campaigns.engine import tokens
from campaigns.models import Delivery, DeliveryStatus, EmailBurst
from campaigns.templating import compile_burst, html_to_text, inline_css, member_context
from common.errors import InvalidInput
from tests.campaigns.bursts import drive
from tests.campaigns.test_messages import (
    SCORE,
    SPAM_LIMIT,
    SPAMASSASSIN,
    defects,
    html_parts,
    parse,
    text_part,
)
from tests.conftest import _unavailable
from tests.factories import MemberFactory

ADA = member_context(first_name="Ada", last_name="Lovelace", unsubscribe_url="https://e.example/u/1/")
NOBODY = member_context(unsubscribe_url="https://e.example/u/2/")

NEWSLETTER = """<style>
  p { color: #333333; margin: 0 0 12px }
  .button { background: #0b5cad; color: #ffffff; padding: 8px 12px }
  @media (max-width: 600px) { p { font-size: 18px } }
</style>
<h1>Spring meeting</h1>
<p>Dear {{ member.first_name|default:"friend" }},</p>
<p>Our spring meeting is on <strong>Saturday 12 April</strong> at the boathouse.
{% if member.last_name %}We kept a seat for the {{ member.last_name }} family.{% endif %}</p>
<table>
{% if member.first_name %}<tr><td>Name</td><td>{{ member.first_name }}</td></tr>{% endif %}
<tr><td>Place</td><td>Boathouse</td></tr>
</table>
<p><a class="button" href="https://club.example.org/agenda?year=2025&amp;part=1">Read the agenda</a></p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
"""


# --- the text part ------------------------------------------------------------------------------------


def test_the_text_part_is_plain_text_with_links_as_text_and_url():
    text = html_to_text(NEWSLETTER)

    assert "Read the agenda (https://club.example.org/agenda?year=2025&part=1)" in text
    assert "Unsubscribe ({{ unsubscribe_url }})" in text
    assert "Saturday 12 April" in text and "**" not in text  # no Markdown emphasis
    assert "color" not in text  # the CSS is not text
    assert "Name  {{ member.first_name }}" in text  # table cells side by side


def test_the_template_tags_survive_the_conversion_exactly():
    text = html_to_text(NEWSLETTER)

    assert 'Dear {{ member.first_name|default:"friend" }},' in text
    assert "{% if member.last_name %}We kept a seat for the {{ member.last_name }} family.{% endif %}" in text
    assert text.count("{% if member.first_name %}") == 1 and text.count("{% endif %}") == 2


def test_the_generated_text_renders_for_each_member():
    compiled = compile_burst(subject="Hi", body="", html_body=NEWSLETTER)

    _s, ada_text, _h = compiled.render(ADA)
    _s, nobody_text, _h = compiled.render(NOBODY)

    assert "Dear Ada," in ada_text and "seat for the Lovelace family" in ada_text
    assert "Unsubscribe (https://e.example/u/1/)" in ada_text
    assert "Dear friend," in nobody_text and "seat for" not in nobody_text and "Name" not in nobody_text


def test_a_text_body_that_is_given_is_used_as_it_is():
    compiled = compile_burst(subject="Hi", body="Mine, {{ member.first_name }}.", html_body=NEWSLETTER)
    assert compiled.render(ADA)[1] == "Mine, Ada."


def test_markdown_characters_are_not_escaped():
    text = html_to_text("<p>- a dash, 1. a number, a_b * c + d \\ e</p>")
    assert text.strip() == "- a dash, 1. a number, a_b * c + d \\ e"


# --- CSS inlined ------------------------------------------------------------------------------------------


def test_style_rules_are_inlined_and_the_style_block_kept_for_media_queries():
    html = inline_css(NEWSLETTER)

    assert '<p style="color: #333333;margin: 0 0 12px;">' in html
    assert "background: #0b5cad" in html and 'class="button"' in html
    assert "@media (max-width: 600px)" in html  # clients that read <style> still get it


def test_the_template_tags_survive_the_inlining():
    html = inline_css(NEWSLETTER)

    assert 'href="{{ unsubscribe_url }}"' in html
    assert '{{ member.first_name|default:"friend" }}' in html
    assert "{% if member.first_name %}<tbody><tr>" in html or "{% if member.first_name %}<tr>" in html
    rendered = compile_burst(subject="Hi", body="x", html_body=NEWSLETTER).render(ADA)[2]
    assert (
        '<a href="https://e.example/u/1/" style="' in rendered or 'href="https://e.example/u/1/"' in rendered
    )
    assert "<td>Ada</td>" in rendered and "Dear Ada," in rendered
    nobody = compile_burst(subject="Hi", body="x", html_body=NEWSLETTER).render(NOBODY)[2]
    assert "<td>Name</td>" not in nobody and "Dear friend," in nobody


def test_html_without_a_style_block_is_left_exactly_as_it_is():
    html = '<p class="x">Hi {{ member.first_name }} &amp; <b>you</b></p><br><a href="{{ unsubscribe_url }}">x</a>'
    assert inline_css(html) == html


def test_a_whole_document_stays_a_document():
    document = (
        "<!DOCTYPE html><html><head><title>{{ burst.subject }}</title><style>p{color:red}</style></head>"
        "<body><p>Hi {{ member.first_name }}</p></body></html>"
    )
    html = inline_css(document)
    assert html.startswith("<!DOCTYPE html><html><head><title>{{ burst.subject }}</title>")
    assert '<p style="color: red;">Hi {{ member.first_name }}</p>' in html


def test_a_block_tag_inside_the_style_block_leaves_the_html_as_it_is():
    html = "<style>{% if member.first_name %}p { color: red }{% endif %}</style><p>Hi</p>"
    assert inline_css(html) == html


def test_no_remote_stylesheet_is_fetched_and_link_tags_are_kept():
    html = '<link rel="stylesheet" href="http://127.0.0.1:9/never.css"><style>p{color:red}</style><p>x</p>'
    inlined = inline_css(html)  # would raise or hang trying to fetch the URL
    assert '<link rel="stylesheet" href="http://127.0.0.1:9/never.css">' in inlined


# --- once per compile ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_conversions_run_once_per_burst_not_once_per_member(engine, monkeypatch):
    calls = {"text": 0, "css": 0}
    make_text, inline = templating.html_to_text, templating.inline_css

    def counting_text(html):
        calls["text"] += 1
        return make_text(html)

    def counting_css(html):
        calls["css"] += 1
        return inline(html)

    monkeypatch.setattr(templating, "html_to_text", counting_text)
    monkeypatch.setattr(templating, "inline_css", counting_css)
    members = MemberFactory.create_bulk(12, prefix="once")
    burst = services.burst_create(
        subject="Spring",
        body="",
        html_body=NEWSLETTER,
        sender="news@example.org",
        recipient_ids=[m.pk for m in members],
    )
    services.burst_send(burst_id=burst.pk)
    calls.update(text=0, css=0)

    drive(burst.pk)

    assert engine.message_count == 12
    assert calls == {"text": 1, "css": 1}  # the burst's compile, shared by every message


# --- saving and sending ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_html_only_burst_is_saved_with_an_empty_body():
    burst = services.burst_create(subject="Hi", body="", html_body="<p>Hi {{ member.first_name }}</p>")
    assert EmailBurst.objects.get(pk=burst.pk).body == ""
    assert selectors.burst_preview(burst_id=burst.pk).text.strip() == "Hi"


@pytest.mark.django_db
@pytest.mark.parametrize("body, html_body", [("", ""), ("  \n", ""), ("", "   ")])
def test_without_body_and_html_body_the_burst_is_refused(body, html_body):
    with pytest.raises(InvalidInput) as caught:
        services.burst_create(subject="Hi", body=body, html_body=html_body)
    assert caught.value.field == "body"
    assert caught.value.message == "body or html_body is required"
    assert not EmailBurst.objects.exists()


@pytest.mark.django_db
def test_emptying_the_body_of_a_burst_with_html_is_fine_and_of_one_without_is_refused():
    burst = services.burst_create(subject="Hi", body="Text", html_body="<p>HTML</p>")
    services.burst_update(burst_id=burst.pk, body="")
    assert EmailBurst.objects.get(pk=burst.pk).body == ""
    with pytest.raises(InvalidInput):
        services.burst_update(burst_id=burst.pk, html_body="")
    assert EmailBurst.objects.get(pk=burst.pk).html_body == "<p>HTML</p>"


@pytest.fixture
def spamassassin() -> str:
    path = shutil.which("spamassassin") or (SPAMASSASSIN if os.path.exists(SPAMASSASSIN) else None)
    if not path:
        _unavailable(f"needs SpamAssassin at {SPAMASSASSIN} (apt-get install -y spamassassin)")
    return path


@pytest.fixture
def site(settings):
    settings.SITE_URL = "https://emailer.example.org"
    settings.UNSUBSCRIBE_MAILTO = ""


@pytest.mark.django_db
def test_the_message_has_both_parts_inlined_css_and_no_defect(engine, site):
    ada = MemberFactory(email="ada@example.test", first_name="Ada", last_name="Lovelace")
    burst = services.burst_create(
        subject="Spring meeting",
        body="",
        html_body=NEWSLETTER,
        sender="news@example.org",
        recipient_ids=[ada.pk],
    )
    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    [received] = engine.messages
    message = parse(received.raw)
    assert defects(message) == []
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    url = tokens.unsubscribe_url(ada.pk)
    text = text_part(message).get_content()
    assert "Dear Ada," in text and f"Unsubscribe ({url})" in text
    assert "Read the agenda (https://club.example.org/agenda?year=2025&part=1)" in text
    [html] = html_parts(message)
    content = html.get_content()
    assert '<p style="color: #333333;margin: 0 0 12px;">Dear Ada,</p>' in content
    assert Delivery.objects.get(burst=burst).status == DeliveryStatus.SENT


@pytest.mark.django_db
def test_html_only_messages_score_at_most_half_a_point_with_spamassassin(
    engine, site, spamassassin, tmp_path
):
    people = [("ada@example.test", "Ada", "Lovelace"), ("grace@example.test", "Grace", "Hopper")]
    members = [
        MemberFactory(email=e, first_name=f, last_name=last, username=e.split("@")[0])
        for e, f, last in people
    ]
    burst = services.burst_create(
        subject="Spring meeting of the rowing club on 12 April",
        body="",
        html_body=NEWSLETTER,
        sender="news@example.org",
        from_name="Rowing Club",
        reply_to="secretary@example.org",
        recipient_ids=[m.pk for m in members],
    )
    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)
    assert engine.message_count == 2

    box_path = tmp_path / "burst.mbox"
    box = mailbox.mbox(box_path)
    for received in engine.messages:
        assert defects(parse(received.raw)) == []
        box.add(mailbox.mboxMessage(received.raw.replace(b"\r\n", b"\n")))
    box.flush()
    box.close()
    home = tmp_path / "sa-home"
    home.mkdir()
    with box_path.open("rb") as stdin:
        run = subprocess.run(
            [spamassassin, "-L", "-t", "--mbox", "--cf=bayes_auto_learn 0"],
            stdin=stdin,
            capture_output=True,
            env={**os.environ, "HOME": str(home)},
            timeout=120,
        )
    output = run.stdout.decode("utf-8", "replace")
    scores = [float(m.group(1)) for m in SCORE.finditer(output)]
    assert len(scores) == 2, f"SpamAssassin said: {run.stderr.decode()[-1000:]}"
    hits = re.findall(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)", output, re.MULTILINE)
    print("SpamAssassin scores", scores, hits)
    assert max(scores) <= SPAM_LIMIT, hits
