"""Test sends from the admin's preview page (SPEC section 11): a visible "Preview & test"
button, a form with up to 10 addresses (prefilled with the user's own) that sends the
test rendered for the previewed member, by POST with a CSRF token; the messages say
who got it. The old "send a test to me" URL still works."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from campaigns.models import BurstStatus, Delivery, EmailBurst
from devtools.smtp_sink import find_free_port
from members.models import Member
from tests.admin.browser import login
from tests.admin.csp_watch import csp_violations, settle, watch_csp
from tests.factories import BurstFactory, MemberFactory

pytestmark = pytest.mark.django_db

BURSTS = "/admin/campaigns/emailburst"


def preview_url(burst: EmailBurst) -> str:
    return f"{BURSTS}/{burst.pk}/preview/"


def send_test_url(burst: EmailBurst) -> str:
    return f"{BURSTS}/{burst.pk}/send-test/"


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def textarea(page_html: str) -> str:
    [value] = re.findall(r'<textarea name="emails"[^>]*>(.*?)</textarea>', page_html, re.S)
    return html.unescape(value)


@pytest.fixture
def readers(db) -> list[Member]:
    return [
        MemberFactory(first_name="Ada", email="ada@example.org"),
        MemberFactory(first_name="Grace", email="grace@example.org"),
    ]


@pytest.fixture
def burst(readers) -> EmailBurst:
    return BurstFactory(
        subject="Spring news for {{ member.first_name }}",
        body="Hello {{ member.first_name }}",
        recipients=readers,
    )


# --- the button and the form ------------------------------------------------------------------------


def test_preview_and_test_is_a_button_of_its_own_on_the_burst_page(root_client, burst):
    page = root_client.get(f"{BURSTS}/{burst.pk}/change/")

    top_level = {item["title"]: item for item in page.context["actions_detail"]}
    assert top_level["Preview & test"]["path"] == preview_url(burst)
    check = top_level["Check"]["items"]
    assert "Preview & test" not in [item["title"] for item in check]


def test_the_preview_page_has_the_test_form_prefilled_with_my_address(root_client, burst, readers):
    page = root_client.get(preview_url(burst), {"member": readers[1].pk})

    assert page.status_code == 200
    content = page.content.decode()
    form = re.search(
        r'<form method="post" action="([^"]+)"[^>]*id="send-test-form">(.*?)</form>', content, re.S
    )
    assert form and form.group(1) == send_test_url(burst)
    assert 'name="csrfmiddlewaretoken"' in form.group(2)
    assert f'<input type="hidden" name="member" value="{readers[1].pk}">' in form.group(2)
    assert textarea(content) == "root@example.test"
    assert "Rendered for Grace" in content


def test_the_send_test_url_shows_the_same_form_and_sends_nothing_on_get(root_client, smtp_settings, burst):
    page = root_client.get(send_test_url(burst))

    assert page.status_code == 200
    assert 'id="send-test-form"' in page.content.decode() and 'id="preview-subject"' in page.content.decode()
    assert smtp_settings.connection_count == 0


# --- sending -----------------------------------------------------------------------------------------


def test_the_form_sends_to_the_typed_addresses_rendered_for_the_previewed_member(
    root_client, smtp_settings, burst, readers
):
    typed = "one@example.org, two@example.org\nthree@example.org\n"
    response = root_client.post(send_test_url(burst), {"emails": typed, "member": readers[1].pk})

    assert response.status_code == 302
    assert response["Location"] == f"{preview_url(burst)}?member={readers[1].pk}"
    [message] = messages_of(response)
    assert message == (
        f"A test of “{burst}”, rendered for Grace Member <grace@example.org>, was sent to "
        "one@example.org, two@example.org, three@example.org."
    )
    assert smtp_settings.connection_count == 1
    assert [m.rcpt_tos for m in smtp_settings.messages] == [
        ("one@example.org",),
        ("two@example.org",),
        ("three@example.org",),
    ]
    assert {m.subject for m in smtp_settings.messages} == {"[TEST] Spring news for Grace"}
    assert not Delivery.objects.filter(burst=burst).exists()
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT


def test_eleven_addresses_are_refused_and_the_typed_text_is_kept(root_client, smtp_settings, burst, readers):
    typed = "\n".join(f"reader{i}@example.org" for i in range(11))
    response = root_client.post(send_test_url(burst), {"emails": typed, "member": readers[0].pk})

    assert response.status_code == 200
    assert messages_of(response) == ["The test was not sent: emails: at most 10 addresses per test, not 11"]
    assert textarea(response.content.decode()) == typed
    assert smtp_settings.connection_count == 0


def test_a_hostile_typed_address_is_refused_and_shown_escaped(root_client, smtp_settings, burst):
    hostile = "<img data-xss src=x>@example.org"
    response = root_client.post(send_test_url(burst), {"emails": hostile})

    content = response.content.decode()
    assert response.status_code == 200 and "<img data-xss" not in content
    assert "&lt;img data-xss src=x&gt;@example.org" in content
    assert smtp_settings.connection_count == 0


def test_an_address_the_server_refuses_is_named_in_a_warning(root_client, smtp_settings, burst):
    response = root_client.post(send_test_url(burst), {"emails": "one@example.org unknown.x@example.org"})

    success, warning = messages_of(response)
    assert success.endswith("was sent to one@example.org.")
    assert warning.startswith("The mail server did not accept the test for: unknown.x@example.org (550")


def test_a_post_without_a_csrf_token_is_refused(superuser, smtp_settings, burst):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)

    response = client.post(send_test_url(burst), {"emails": "one@example.org"})

    assert response.status_code == 403
    assert smtp_settings.connection_count == 0


def test_staff_without_the_send_permission_may_send_a_test(editor_client, editor, smtp_settings, burst):
    response = editor_client.post(send_test_url(burst), {"emails": "one@example.org"})

    assert response.status_code == 302
    assert smtp_settings.message_count == 1
    [message] = messages_of(response)
    assert f"rendered for {editor}" in message


def test_an_unreachable_server_is_an_error_message(root_client, settings, burst):
    port = find_free_port()
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 1

    response = root_client.post(send_test_url(burst), {"emails": "one@example.org"})

    [message] = messages_of(response)
    assert message.startswith(f"The test was not sent: The mail server 127.0.0.1:{port} is not available")


# --- in chromium, under the admin's Content-Security-Policy -------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_test_sent_from_the_preview_page_in_a_browser(page, superuser, smtp_settings, live_server):
    readers = [MemberFactory(first_name=name) for name in ("Ada", "Grace")]
    burst = BurstFactory(subject="News for {{ member.first_name }}", body="Hi", recipients=readers)
    watch_csp(page)
    login(page, "root", "root-pass-1234")

    page.goto(f"{BURSTS}/{burst.pk}/change/")
    settle(page)
    page.locator("a", has_text="Preview & test").first.click()
    page.wait_for_url(f"**{preview_url(burst)}")
    settle(page)
    page.js_errors.clear()  # from here on: the preview page and what its form does
    with page.expect_navigation():
        page.select_option("select[name=member]", str(readers[1].pk))
    settle(page)
    page.fill("textarea[name=emails]", "one@example.org\ntwo@example.org")
    with page.expect_navigation():
        page.locator("#send-test-form button[type=submit]").click()
    settle(page)

    assert "was sent to one@example.org, two@example.org." in page.content()
    assert smtp_settings.wait_for_messages(2)
    assert {m.subject for m in smtp_settings.messages} == {"[TEST] News for Grace"}
    assert csp_violations(page) == []
    assert page.js_errors == []
