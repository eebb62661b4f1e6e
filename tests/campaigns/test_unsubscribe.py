"""`/unsubscribe/<signed token>/`: no login, GET only asks, POST (and RFC 8058
one-click) unsubscribes, idempotently (issue 3 point 8); the pages name the
organisation (`ORGANISATION_NAME`) and, once unsubscribed, offer "Subscribe again", a
CSRF-protected POST with the same token."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse

from campaigns import services
from campaigns.engine import tokens
from campaigns.models import Delivery, DeliveryStatus
from members.models import Member

ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def ada(db) -> Member:
    return Member.objects.create_user(
        username="ada", email="ada@example.test", password=None, first_name="Ada"
    )


@pytest.fixture
def csrf_client() -> Client:
    """A client that enforces CSRF, as a browser or a mail provider meets it."""
    return Client(enforce_csrf_checks=True)


def path_for(member: Member) -> str:
    return reverse("unsubscribe", args=[tokens.unsubscribe_token(member.pk)])


def unsubscribed_at(member: Member):
    return Member.objects.values_list("unsubscribed_at", flat=True).get(pk=member.pk)


# --- GET asks, POST acts -----------------------------------------------------------------------


def test_get_shows_a_confirmation_page_and_changes_nothing(csrf_client, ada):
    response = csrf_client.get(path_for(ada))

    assert response.status_code == 200
    content = response.content.decode()
    assert "ada@example.test" in content
    assert re.search(r'<form[^>]*method="post"', content)
    assert unsubscribed_at(ada) is None


def test_get_many_times_as_link_scanners_do_still_changes_nothing(csrf_client, ada):
    for _ in range(3):
        assert csrf_client.get(path_for(ada)).status_code == 200
    assert unsubscribed_at(ada) is None


def test_get_for_an_unsubscribed_member_says_so(csrf_client, ada):
    services.member_unsubscribe(member_id=ada.pk)

    response = csrf_client.get(path_for(ada))

    assert response.status_code == 200
    assert "already unsubscribed" in response.content.decode()


def test_post_unsubscribes_and_a_second_post_is_fine_and_changes_nothing(csrf_client, ada):
    first = csrf_client.post(path_for(ada))

    assert first.status_code == 200
    assert "unsubscribed" in first.content.decode()
    when = unsubscribed_at(ada)
    assert when is not None

    second = csrf_client.post(path_for(ada))

    assert second.status_code == 200
    assert unsubscribed_at(ada) == when


def test_the_confirmation_form_posts_back_without_a_csrf_token(csrf_client, ada):
    page = csrf_client.get(path_for(ada)).content.decode()
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))

    response = csrf_client.post(path_for(ada), fields)

    assert response.status_code == 200
    assert unsubscribed_at(ada) is not None


def test_one_click_post_without_csrf_token_or_cookie_unsubscribes(csrf_client, ada):
    response = csrf_client.post(path_for(ada), data=ONE_CLICK, content_type=FORM)

    assert response.status_code == 200
    assert unsubscribed_at(ada) is not None


def test_no_login_is_needed(client, ada):
    assert "_auth_user_id" not in client.session
    get = client.get(path_for(ada))
    post = client.post(path_for(ada), data=ONE_CLICK, content_type=FORM)

    assert get.status_code == 200 and post.status_code == 200
    assert "login" not in (get.get("Location") or "") + (post.get("Location") or "")
    assert unsubscribed_at(ada) is not None


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_refused(client, ada, method):
    response = getattr(client, method)(path_for(ada))
    assert response.status_code == 405
    assert unsubscribed_at(ada) is None


# --- tokens --------------------------------------------------------------------------------------


def tampered_tokens(member: Member, settings) -> list[str]:
    token = tokens.unsubscribe_token(member.pk)
    assert token.startswith(str(member.pk)), "the token names its member first"
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    original_key = settings.SECRET_KEY
    settings.SECRET_KEY = "another-secret-key-entirely-0123456789-abcdefghijklmnop"
    other_key = tokens.unsubscribe_token(member.pk)
    settings.SECRET_KEY = original_key
    assert other_key != token
    return [
        flipped,  # signature changed
        re.sub(r"^\d+", str(member.pk + 1), token),  # another member's id, same signature
        str(member.pk),  # no signature
        token[:-5],  # cut short by a mail program
        signing.Signer().sign(str(member.pk)),  # signed by Django, for another purpose
        signing.Signer(salt=tokens.UNSUBSCRIBE_SALT).sign(str(member.pk)),  # another scheme
        other_key,  # signed with another SECRET_KEY
        "garbage",
    ]


@pytest.mark.parametrize("index", range(8))
def test_a_tampered_token_gets_400_and_changes_nothing(client, ada, index, settings):
    other = Member.objects.create_user(username="bob", email="bob@example.test", password=None)
    assert other.pk == ada.pk + 1
    token = tampered_tokens(ada, settings)[index]
    if token == tokens.unsubscribe_token(ada.pk):
        pytest.fail("this tampered token is the real one")
    path = reverse("unsubscribe", args=[token])

    get = client.get(path)
    post = client.post(path, data=ONE_CLICK, content_type=FORM)

    assert get.status_code == 400
    assert post.status_code == 400
    assert "not valid" in post.content.decode()
    assert unsubscribed_at(ada) is None
    assert unsubscribed_at(other) is None


@pytest.mark.parametrize("suffix", ["%C3%A9", "%E2%9C%93abc"])
def test_a_token_with_non_ascii_characters_gets_400_not_500(ada, suffix):
    client = Client(raise_request_exception=False)
    path = f"/unsubscribe/{ada.pk}.{suffix}/"

    assert client.get(path).status_code == 400
    assert client.post(path, data=ONE_CLICK, content_type=FORM).status_code == 400
    assert unsubscribed_at(ada) is None


def test_a_signed_token_for_a_member_who_no_longer_exists_gets_400(client, ada):
    path = path_for(ada)
    ada.delete()

    assert client.get(path).status_code == 400
    assert client.post(path, data=ONE_CLICK, content_type=FORM).status_code == 400


def test_a_signed_token_that_is_not_a_member_id_gets_400(client, db):
    token = signing.Signer(salt=tokens.UNSUBSCRIBE_SALT).sign("abc")
    assert client.post(reverse("unsubscribe", args=[token])).status_code == 400


def test_the_token_is_stable_and_names_its_member(ada):
    token = tokens.unsubscribe_token(ada.pk)
    assert token == tokens.unsubscribe_token(ada.pk)
    assert tokens.member_id_from_token(token) == ada.pk
    with pytest.raises(signing.BadSignature):
        tokens.member_id_from_token(token + "x")


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_link_from_a_received_message_unsubscribes_and_the_member_is_skipped_later(
    settings, smtp_settings, immediate_huey, csrf_client
):
    settings.EMAIL_RATE_LIMIT = None
    ada = Member.objects.create_user(username="ada", email="ada@example.test", password=None)
    bob = Member.objects.create_user(username="bob", email="bob@example.test", password=None)

    def burst():
        created = services.burst_create(
            subject="News", body="Hello", sender="news@example.org", recipient_ids=[ada.pk, bob.pk]
        )
        services.burst_send(burst_id=created.pk)
        return created

    first = burst()
    [received] = [m for m in smtp_settings.messages if m.rcpt_tos == ("ada@example.test",)]
    [url] = re.findall(r"<(https?://[^>]+)>", received.message["List-Unsubscribe"])

    # what a mail provider does with List-Unsubscribe-Post (RFC 8058)
    assert received.message["List-Unsubscribe-Post"] == ONE_CLICK
    response = csrf_client.post(urlsplit(url).path, data=ONE_CLICK, content_type=FORM)
    assert response.status_code == 200
    assert unsubscribed_at(ada) is not None
    assert Delivery.objects.get(burst=first, member=ada).status == DeliveryStatus.SENT

    second = burst()

    skipped = Delivery.objects.get(burst=second, member=ada)
    assert skipped.status == DeliveryStatus.SKIPPED
    assert "unsubscribed" in skipped.error_message
    assert Delivery.objects.get(burst=second, member=bob).status == DeliveryStatus.SENT
    assert smtp_settings.received_count("ada@example.test") == 1
    assert smtp_settings.received_count("bob@example.test") == 2


@pytest.mark.django_db(transaction=True)
def test_an_unsubscribed_member_is_left_out_of_an_all_members_burst(settings, smtp_settings, immediate_huey):
    settings.EMAIL_RATE_LIMIT = None
    ada = Member.objects.create_user(username="ada", email="ada@example.test", password=None)
    Member.objects.create_user(username="bob", email="bob@example.test", password=None)
    Client().post(path_for(ada), data=ONE_CLICK, content_type=FORM)

    burst = services.burst_create(subject="News", body="Hello", sender="news@example.org", all_members=True)
    services.burst_send(burst_id=burst.pk)

    assert set(smtp_settings.received_count_by_address()) == {"bob@example.test"}
    assert not Delivery.objects.filter(burst=burst, member=ada, status=DeliveryStatus.SENT).exists()


# --- the organisation's name, and subscribing again ---------------------------------------------


def form_fields(html: str, action: str | None = None) -> dict[str, str]:
    """The hidden fields of the page's form (the one with ``action`` when given)."""
    for form in re.findall(r"<form[^>]*>(.*?)</form>", html, re.S):
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
        if action is None or fields.get("action") == action:
            return fields
    raise AssertionError(f"no form with action={action!r} in the page")


@pytest.mark.parametrize("already", [False, True])
def test_the_pages_carry_the_organisations_name_escaped(client, ada, settings, already):
    settings.ORGANISATION_NAME = "Friends of <b>Kew</b> & Co"
    if already:
        services.member_unsubscribe(member_id=ada.pk)
    pages = [client.get(path_for(ada)), client.post(path_for(ada), data=ONE_CLICK, content_type=FORM)]
    pages.append(client.get(reverse("unsubscribe", args=["garbage"])))
    for response in pages:
        html = response.content.decode()
        assert "Friends of &lt;b&gt;Kew&lt;/b&gt; &amp; Co" in html
        assert "<b>Kew</b>" not in html


def test_the_done_page_offers_to_subscribe_again_and_that_subscribes_again(csrf_client, ada):
    done = csrf_client.post(path_for(ada), data=ONE_CLICK, content_type=FORM)
    assert unsubscribed_at(ada) is not None
    fields = form_fields(done.content.decode(), "resubscribe")
    assert fields.get("csrfmiddlewaretoken"), "the form to subscribe again carries a CSRF token"
    assert "Subscribe again" in done.content.decode()

    again = csrf_client.post(path_for(ada), fields)

    assert again.status_code == 200
    assert "subscribed again" in again.content.decode()
    assert unsubscribed_at(ada) is None


def test_subscribing_again_without_the_csrf_token_is_refused(csrf_client, ada):
    services.member_unsubscribe(member_id=ada.pk)
    when = unsubscribed_at(ada)

    response = csrf_client.post(path_for(ada), {"action": "resubscribe"})

    assert response.status_code == 403
    assert unsubscribed_at(ada) == when


def test_subscribing_again_with_a_bad_token_gets_400(csrf_client, ada):
    services.member_unsubscribe(member_id=ada.pk)
    path = reverse("unsubscribe", args=[tokens.unsubscribe_token(ada.pk) + "x"])

    assert csrf_client.post(path, {"action": "resubscribe"}).status_code == 400
    assert unsubscribed_at(ada) is not None


def test_an_unsubscribed_members_get_offers_to_subscribe_again_and_changes_nothing(csrf_client, ada):
    services.member_unsubscribe(member_id=ada.pk)
    when = unsubscribed_at(ada)

    response = csrf_client.get(path_for(ada))

    assert response.status_code == 200
    assert form_fields(response.content.decode(), "resubscribe")["csrfmiddlewaretoken"]
    assert unsubscribed_at(ada) == when


def test_one_click_still_unsubscribes_after_subscribing_again(csrf_client, ada):
    done = csrf_client.post(path_for(ada), data=ONE_CLICK, content_type=FORM)
    again = csrf_client.post(path_for(ada), form_fields(done.content.decode(), "resubscribe"))
    assert unsubscribed_at(ada) is None
    # the page after subscribing again offers to unsubscribe, with no CSRF token needed
    assert "csrfmiddlewaretoken" not in form_fields(again.content.decode())

    response = Client(enforce_csrf_checks=True).post(path_for(ada), data=ONE_CLICK, content_type=FORM)

    assert response.status_code == 200
    assert unsubscribed_at(ada) is not None
