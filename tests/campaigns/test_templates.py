"""Burst templates: a sandbox that knows only harmless tags and filters and sees
only the whitelisted context (issue 3 point 7)."""

from __future__ import annotations

import pytest

from campaigns import selectors, services
from campaigns.engine import tokens
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from campaigns.templating import check_templates, compile_burst, member_context
from common.errors import InvalidInput
from members.models import Member
from tests.factories import BurstFactory, DeliveryFactory

BODY = "Hello {{ member.first_name }}"


REFUSED = {
    "load": "{% load static %}hi",
    "load_i18n": "{% load i18n %}{% trans 'hi' %}",
    "include": '{% include "campaigns/unsubscribe_confirm.html" %}',
    "extends": '{% extends "campaigns/unsubscribe_base.html" %}',
    "debug": "{% debug %}",
    "csrf_token": "{% csrf_token %}",
    "url": "{% url 'unsubscribe' 'x' %}",
    "static": "{% static 'admin/css/base.css' %}",
    "pprint": "{{ member|pprint }}",
    "block": "{% block content %}x{% endblock %}",
    "widthratio": "{% widthratio 1 2 3 %}",
    "regroup": "{% regroup member by first_name as x %}",
    "underscore_attribute": "{{ member.first_name.__class__ }}",
    "underscore_variable": "{{ _private }}",
    "unknown_filter": "{{ member.first_name|no_such_filter }}",
    "unclosed_block": "{% if member.first_name %}open",
}


def valid(**overrides) -> dict:
    fields = {"subject": "Hello", "body": BODY, "html_body": "<p>Hi</p>"}
    fields.update(overrides)
    return fields


# --- refused when saved -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["subject", "body", "html_body"])
@pytest.mark.parametrize("name", list(REFUSED))
def test_burst_create_refuses_a_tag_or_filter_outside_the_whitelist(field, name):
    with pytest.raises(InvalidInput) as caught:
        services.burst_create(**valid(**{field: REFUSED[name]}))
    assert caught.value.field == field
    assert caught.value.message
    assert not EmailBurst.objects.exists()


@pytest.mark.parametrize("name", list(REFUSED))
def test_burst_validate_refuses_a_tag_or_filter_outside_the_whitelist(name):
    with pytest.raises(InvalidInput) as caught:
        services.burst_validate(**valid(body=REFUSED[name]))
    assert caught.value.field == "body"


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["load", "include", "extends", "debug", "pprint"])
def test_burst_update_refuses_them_too(name):
    burst = services.burst_create(**valid())
    with pytest.raises(InvalidInput) as caught:
        services.burst_update(burst_id=burst.pk, html_body=REFUSED[name])
    assert caught.value.field == "html_body"
    burst.refresh_from_db()
    assert burst.html_body == "<p>Hi</p>"


def test_a_template_that_fails_for_a_member_with_empty_fields_is_refused_with_its_field():
    with pytest.raises(InvalidInput) as caught:
        services.burst_validate(**valid(subject="{{ member.first_name|divisibleby:2 }}"))
    assert caught.value.field == "subject"
    assert "empty" in caught.value.message


@pytest.mark.parametrize(
    "source",
    [
        "{% if member.first_name %}Hi {{ member.first_name|title }}{% else %}Hi{% endif %}",
        "{% for c in member.first_name|make_list %}{{ c }}{% endfor %}",
        "{% with n=member.full_name %}{{ n|default:'friend' }}{% endwith %}",
        "{{ member.first_name|default:'friend'|upper|truncatechars:10 }}",
        "{% firstof member.first_name member.username 'friend' %}",
        "{% now 'Y' %} {% comment %}x{% endcomment %}{% templatetag openblock %}",
        "{% autoescape off %}{{ member.first_name }}{% endautoescape %}",
        "{% spaceless %}<p> a </p> <p> b </p>{% endspaceless %}",
        "{{ member.first_name|first }}{{ member.last_name|last }}{{ member.full_name|wordcount }}",
        "{{ member.email|urlencode }} {{ unsubscribe_url }} {{ burst.subject }}",
    ],
)
def test_whitelisted_tags_and_filters_are_accepted(source):
    services.burst_validate(subject="Hi", body=source, html_body=source)


# --- the context ---------------------------------------------------------------------------------

HIDDEN = [
    "{{ member.password }}",
    "{{ member.is_staff }}",
    "{{ member.is_superuser }}",
    "{{ member.pk }}",
    "{{ member.id }}",
    "{{ member.birth_date }}",
    "{{ member.date_joined }}",
    "{{ member.deliveries }}",
    "{{ member.email_bursts }}",
    "{{ member.user_permissions }}",
    "{{ settings.SECRET_KEY }}",
    "{{ settings }}",
    "{{ request }}",
    "{{ user }}",
    "{{ user.password }}",
    "{{ perms }}",
    "{{ csrf_token }}",
    "{{ burst.body }}",
    "{{ burst.created_by }}",
    "{{ burst.sender }}",
    "{{ burst.pk }}",
    "{{ delivery }}",
    "{{ SECRET_KEY }}",
]


@pytest.fixture
def secret_member(db):
    return Member.objects.create_user(
        username="ada",
        email="ada@example.test",
        password="hunter2-very-secret",
        first_name="Ada",
        last_name="Lovelace",
        is_staff=True,
        is_superuser=True,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("source", HIDDEN)
def test_a_variable_outside_the_whitelist_is_refused_naming_the_allowed_ones(source):
    with pytest.raises(InvalidInput) as caught:
        services.burst_create(subject="Hi", body=f"B[{source}]", sender="news@example.org")
    assert caught.value.field == "body"
    assert caught.value.snippet == source
    assert "member.first_name" in caught.value.message and "unsubscribe_url" in caught.value.message
    assert not EmailBurst.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("source", HIDDEN)
def test_a_template_sees_nothing_outside_the_whitelist(source, secret_member):
    # Refused when saved, but a row can hold one anyway (an older version, the shell):
    # the engine still renders nothing for it.
    burst = BurstFactory(
        subject=f"S[{source}]",
        body=f"B[{source}]",
        html_body=f"<p>H[{source}]</p>",
        sender="news@example.org",
    )

    rendered = selectors.burst_preview(burst_id=burst.pk, member_id=secret_member.pk)

    assert rendered.subject == "S[]"
    assert rendered.text == "B[]"
    assert rendered.html == "<p>H[]</p>"


def test_the_whitelisted_context_is_exactly_names_email_username_subject_and_unsubscribe_url():
    context = member_context(
        first_name="Ada",
        middle_name="B.",
        last_name="Lovelace",
        email="ada@example.test",
        username="ada",
        subject="S",
        unsubscribe_url="https://x.example/u/1/",
    )
    assert context == {
        "member": {
            "first_name": "Ada",
            "middle_name": "B.",
            "last_name": "Lovelace",
            "full_name": "Ada B. Lovelace",
            "email": "ada@example.test",
            "username": "ada",
        },
        "burst": {"subject": "S"},
        "unsubscribe_url": "https://x.example/u/1/",
    }
    # plain strings only: nothing to call, nothing to walk to
    assert all(isinstance(v, str) for v in context["member"].values())


@pytest.mark.django_db(transaction=True)
def test_a_sent_message_shows_the_member_fields_and_nothing_secret(settings, smtp_settings, immediate_huey):
    settings.EMAIL_RATE_LIMIT = None
    member = Member.objects.create_user(
        username="ada",
        email="ada@example.test",
        password="hunter2-very-secret",
        first_name="Ada",
        middle_name="King",
        last_name="Lovelace",
        is_staff=True,
    )
    body = (
        "first={{ member.first_name }} middle={{ member.middle_name }} last={{ member.last_name }}\n"
        "full={{ member.full_name }} email={{ member.email }} username={{ member.username }}\n"
        "subject={{ burst.subject }}\n"
        "url={{ unsubscribe_url }}\n"
    )
    burst = services.burst_create(
        subject="Hi", body=body, sender="news@example.org", recipient_ids=[member.pk]
    )
    # Variables outside the whitelist are refused when saved and sent; a row that holds
    # them anyway (an older version, the shell) renders them empty.
    hidden = (
        "password=[{{ member.password }}] staff=[{{ member.is_staff }}] key=[{{ settings.SECRET_KEY }}]\n"
    )
    EmailBurst.objects.filter(pk=burst.pk).update(
        body=body + hidden, status=BurstStatus.SENDING, deliveries_ready=True
    )
    DeliveryFactory(burst=burst, member=member)

    services.chunk_process(burst_id=burst.pk)

    [received] = smtp_settings.messages
    text = received.message.get_body(preferencelist=("plain",)).get_content()
    assert "first=Ada middle=King last=Lovelace" in text
    assert "full=Ada King Lovelace email=ada@example.test username=ada" in text
    assert "subject=Hi" in text
    assert f"url={tokens.unsubscribe_url(member.pk)}" in text
    assert "password=[] staff=[] key=[]" in text
    assert settings.SECRET_KEY not in received.raw.decode("ascii", "replace")
    member.refresh_from_db()
    assert member.password.encode() not in received.raw


# --- members with empty fields ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_member_with_every_optional_field_empty_is_rendered_and_sent(
    settings, smtp_settings, immediate_huey
):
    settings.EMAIL_RATE_LIMIT = None
    bare = Member.objects.create_user(username="bare", email="bare@example.test", password=None)
    assert (bare.first_name, bare.middle_name, bare.last_name, bare.birth_date) == ("", "", "", None)
    burst = services.burst_create(
        subject="Hello {{ member.first_name|default:'friend' }}{{ member.last_name }}",
        body=(
            "Dear {{ member.full_name|default:'member' }},\n"
            "{% if member.middle_name %}middle {{ member.middle_name }}{% endif %}"
            "{{ member.first_name|first|upper }}{{ member.last_name|title|truncatewords:2 }}\n"
        ),
        html_body="<p>Dear {{ member.full_name|default:'member' }}{{ member.first_name|capfirst }}</p>",
        sender="news@example.org",
        recipient_ids=[bare.pk],
    )

    services.burst_send(burst_id=burst.pk)

    delivery = Delivery.objects.get(burst=burst)
    assert delivery.status == DeliveryStatus.SENT, delivery.error_message
    [received] = smtp_settings.messages
    assert received.subject == "Hello friend"
    assert "Dear member," in received.message.get_body(preferencelist=("plain",)).get_content()
    assert received.message["To"].addresses[0].addr_spec == "bare@example.test"
    assert received.message["To"].addresses[0].display_name == ""


def test_check_templates_renders_for_an_empty_member_and_returns_the_compiled_burst():
    compiled = check_templates(subject="Hi {{ member.first_name }}", body="B", html_body="")
    assert compiled.html_body is None
    subject, text, html = compiled.render(member_context(first_name="Ada"))
    assert (subject, text, html) == ("Hi Ada", "B", None)


def test_html_is_escaped_and_text_is_not():
    compiled = compile_burst(
        subject="{{ member.first_name }}", body="{{ member.first_name }}", html_body="{{ member.first_name }}"
    )
    subject, text, html = compiled.render(member_context(first_name="<b>&</b>"))
    assert subject == "<b>&</b>"
    assert text == "<b>&</b>"
    assert html == "&lt;b&gt;&amp;&lt;/b&gt;"


@pytest.mark.parametrize(
    "source",
    [
        "Hello {{ member.first_name }}",
        "{{ member.full_name }} <{{ member.email }}> {{ member.username }} {{ member.middle_name }}",
        "{{ burst.subject }}: {{ unsubscribe_url }}",
        "{{ member.nothing }}{{ nobody }}{{ member.last_name }}",
        "no variables at all & <b>text</b>",
        "{{ member.first_name|upper }} {% if member.last_name %}{{ member.last_name }}{% endif %}",
    ],
)
@pytest.mark.parametrize(
    "first_name", ["Ada", "", "<script>&\"'</script>", "Zoë 😀", "{{ member.email }}", "a\r\nb"]
)
def test_rendering_gives_exactly_what_django_renders(source, first_name):
    """Whatever shortcut the engine takes, the output is Django's, escaping included."""
    from django.template import Context

    context = member_context(
        first_name=first_name,
        last_name="O'Brien & <Sons>",
        email="ada@example.test",
        username="ada",
        subject="S & <T>",
        unsubscribe_url="https://x.example/unsubscribe/1.abc/?a=1&b=2",
    )
    compiled = compile_burst(subject=source, body=source, html_body=source)

    subject, text, html = compiled.render(context)

    assert subject == compiled.subject.render(Context(context, autoescape=False))
    assert text == compiled.body.render(Context(context, autoescape=False))
    assert html == compiled.html_body.render(Context(context, autoescape=True))
