"""Hostile subjects, bodies, names, addresses, SMTP replies, pause reasons and
attachment names are escaped on every admin page and on the unsubscribe pages; the
preview's HTML is served alone, sandboxed, under a policy that runs no script; every
page sends a Content-Security-Policy. (The browser side: test_browser_xss.py.)"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.engine.tokens import unsubscribe_url
from campaigns.models import EmailBurst
from members.models import Member
from tests.admin.xss_world import (
    ESCAPED,
    FIRST_NAME,
    SUBJECT,
    admin_pages,
    hostile_world,
    img,
    raw_payloads,
)

pytestmark = pytest.mark.django_db

REQUIRED_DIRECTIVES = ("object-src 'none'", "base-uri 'self'", "frame-ancestors 'none'")


@pytest.fixture
def world(superuser):
    return hostile_world(author=superuser)


def directives(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {part.split(" ", 1)[0]: part.partition(" ")[2] for part in policy.split("; ")}


def test_no_admin_page_shows_a_payload_unescaped(root_client, world):
    for name, url in admin_pages(world).items():
        response = root_client.get(url)
        assert response.status_code == 200, (name, response.status_code)
        html = response.content.decode()
        assert raw_payloads(html) == [], name
        assert ESCAPED.search(html), f"{name}: the payload should be on the page, escaped"


def test_the_preview_escapes_the_rendered_subject_and_text_part(root_client, world):
    html = root_client.get(admin_pages(world)["preview"]).content.decode()
    # The rendered subject is the template's output for this member: `{% if 1 %}` kept the img.
    assert "&lt;img data-xss src=x onerror=&quot;window.__xss=1;this.dataset.ran=1&quot;&gt;News" in html
    assert "&lt;script data-xss&gt;window.__xss=6&lt;/script&gt;Hello &lt;img data-xss" in html
    assert "srcdoc" not in html


def test_the_preview_html_is_served_alone_sandboxed_and_without_script(root_client, world):
    page = root_client.get(admin_pages(world)["preview"])
    frame_url = page.context["frame_url"]
    assert '<iframe sandbox="" referrerpolicy="no-referrer"' in page.content.decode()

    frame = root_client.get(frame_url)
    assert frame.status_code == 200
    assert frame["Content-Type"] == "text/html; charset=utf-8"
    assert frame["X-Frame-Options"] == "SAMEORIGIN"
    policy = directives(frame)
    assert policy["default-src"] == "'none'"
    assert "script-src" not in policy  # falls back to default-src 'none'
    assert policy["img-src"] == "https: data:" and policy["style-src"] == "'unsafe-inline'"
    assert policy["frame-ancestors"] == "'self'" and "sandbox" in policy
    body = frame.content.decode()
    # The member's name is escaped by the HTML engine; the staff's own markup is the email.
    assert "<p>Hi &lt;img data-xss" in body
    assert '</p>" onload="window.__xss=3"' in body


def test_the_preview_frame_answers_404_when_nothing_renders(root_client, world):
    frame = root_client.get(
        f"/admin/campaigns/emailburst/{world.draft.pk}/preview/", {"part": "html", "email": "no@example.test"}
    )
    assert frame.status_code == 404
    assert directives(frame)["default-src"] == "'none'"


def test_messages_naming_a_burst_are_escaped(root_client, world):
    response = root_client.post(
        "/admin/campaigns/emailburst/",
        {"action": "duplicate_as_draft", ACTION_CHECKBOX_NAME: [world.draft.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert EmailBurst.objects.filter(subject=SUBJECT).count() == 4
    html = response.content.decode()
    assert raw_payloads(html) == []
    # The message quotes the subject, escaped like the rest.
    message = html[html.index("duplicated as draft") :][:400]
    assert ESCAPED.search(message), message


def test_the_bulk_schedule_page_escapes_the_subjects(root_client, world):
    response = root_client.post(
        "/admin/campaigns/emailburst/",
        {"action": "schedule_selected", ACTION_CHECKBOX_NAME: [world.draft.pk]},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert raw_payloads(html) == [] and ESCAPED.search(html)


def test_the_import_preview_escapes_the_rows(root_client, superuser):
    csv = (
        "email,first_name,last_name\n"
        f'new@example.test,"{FIRST_NAME.replace(chr(34), chr(34) * 2)}",Last\n'
        f"{img(30)}@example.test,Bad,Row\n"
    )
    response = root_client.post(
        "/admin/members/member/import/",
        {"import_file": SimpleUploadedFile("members.csv", csv.encode())},
        follow=True,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert raw_payloads(html) == []
    assert ESCAPED.search(html) and 'id="import-invalid-rows"' in html
    assert not Member.objects.filter(email="new@example.test").exists()  # a dry run


def test_the_unsubscribe_pages_escape_the_address_and_run_no_script(client, world):
    url = urlsplit(unsubscribe_url(world.victim.pk)).path
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 200
        html = response.content.decode()
        assert raw_payloads(html) == [] and "&lt;svg/data-xss/onload=window.__xss=14&gt;" in html
        policy = directives(response)
        assert policy["script-src"] == "'none'"
        assert all(d in response["Content-Security-Policy"] for d in REQUIRED_DIRECTIVES)


@pytest.mark.parametrize(
    ("url", "scripts"),
    [
        # unfold's Alpine needs 'unsafe-eval' (config/security.py): the admin only.
        ("/admin/login/", "'self' 'unsafe-eval'"),
        ("/admin/", "'self' 'unsafe-eval'"),
        ("/admin/campaigns/emailburst/", "'self' 'unsafe-eval'"),
        ("/api/health/", "'self'"),
        ("/api/docs", "'self'"),
        ("/api/openapi.json", "'self'"),
        ("/api/email-burst/", "'self'"),
        ("/unsubscribe/not-a-token/", "'none'"),
    ],
)
def test_every_page_sends_the_policy(client, url, scripts):
    response = client.get(url)
    assert response.status_code in (200, 302, 400, 401), (url, response.status_code)
    assert all(d in response["Content-Security-Policy"] for d in REQUIRED_DIRECTIVES), url
    policy = directives(response)
    assert policy["script-src"] == scripts
    assert "'unsafe-inline'" not in policy["default-src"]
