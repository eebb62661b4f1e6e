"""Templates render under limits no input can pass (issue 8 point 3):
a rendered part's size, small padding and repeat arguments, loop iterations, and a
time budget checked from inside rendering."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from django.template import Context

from campaigns import selectors, services
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from campaigns.templating import (
    MAX_WIDTH,
    LimitExceeded,
    TemplateProblem,
    check_templates,
    compile_burst,
    member_context,
)
from common.errors import InvalidInput
from members.models import Member

LIST_1000 = "'x'|ljust:'1000'|make_list"
THREE_NESTED_LOOPS = (
    f"{{% for a in {LIST_1000} %}}{{% for b in {LIST_1000} %}}{{% for c in {LIST_1000} %}}"
    "x{% endfor %}{% endfor %}{% endfor %}"
)
# Explodes only for Mallory: neither member the validation renders for is called that.
MALLORY_BOMB = (
    "Hello {{ member.first_name }}{% if member.first_name == 'Mallory' %}"
    + THREE_NESTED_LOOPS
    + "{% endif %}"
)
# ~1 ms an iteration without output, filters or nested loops: only the clock stops it.
SLOW_LOOP = (
    f"{{% for a in {LIST_1000} %}}{{% for b in {LIST_1000} %}}"
    + ("{% if member.first_name == 'z' %}{% endif %}" * 300)
    + "{% endfor %}{% endfor %}"
)


def refused(field: str = "body", **templates) -> TemplateProblem:
    fields = {"subject": "Hi", "body": "Hello", "html_body": ""}
    fields.update(templates)
    with pytest.raises(TemplateProblem) as caught:
        check_templates(**fields)
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")
    return caught.value


# --- padding and repeating ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ljust", "rjust", "center"])
@pytest.mark.parametrize("field", ["subject", "body", "html_body"])
def test_it_refuses_padding_beyond_the_bound_without_building_it(name, field):
    source = f"{{{{ member.email|{name}:'200000000' }}}}"
    tracemalloc.start()
    try:
        problem = refused(field, **{field: source})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"{name}:200000000" in problem.message and f"{MAX_WIDTH:,}" in problem.message
    assert peak < 5_000_000, f"{peak:,} bytes allocated to refuse it"


def test_padding_within_the_bound_is_fine():
    compiled = check_templates(subject="Hi", body=f"[{{{{ member.first_name|ljust:'{MAX_WIDTH}' }}}}]")
    _, text, _ = compiled.render(member_context(first_name="Ada"))
    assert len(text) == MAX_WIDTH + 2


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("{% lorem 100000000 w %}", "lorem 100,000,000 words"),
        ("{% lorem 1000 p %}", "lorem 1,000 paragraphs"),
        ("{% lorem 1000 b random %}", "lorem 1,000 paragraphs"),
        ("{{ '1.5'|floatformat:'1000000' }}", "floatformat:1000000"),
        ("{{ '1.5'|floatformat:'-1000000g' }}", "floatformat:-1000000"),
        ("{{ member.email|date:'" + "r" * 101 + "' }}", "date: a format of more than 100"),
        ("{{ member.email|time:'" + "H" * 101 + "' }}", "time: a format of more than 100"),
        (f"{{{{ {LIST_1000}|join:'" + "y" * 2000 + "' }}", "join would build 1,999,000 characters"),
    ],
)
def test_what_repeats_is_bounded(source, words):
    assert words in refused(body=source).message


def test_a_now_format_beyond_the_bound_does_not_compile():
    problem = refused(body="{% now '" + "r" * 101 + "' %}")
    assert "template error" in problem.message and "at most 100 characters" in problem.message


def test_doubling_a_string_with_add_stops_at_the_size_limit(settings):
    settings.TEMPLATE_MAX_SIZE = 10_000
    doubling = "".join(f"{{% with s{i + 1}=s{i}|add:s{i} %}}" for i in range(20))
    source = "{% with s0='x'|ljust:1000 %}" + doubling + "{{ s20|length }}" + "{% endwith %}" * 21
    assert "add would build 16,000 characters; at most 10,000" in refused(body=source).message


def test_a_slow_filter_takes_a_bounded_input(settings):
    settings.TEMPLATE_MAX_SIZE = 10_000
    source = "{% with s='<b>x</b>'|ljust:1000 %}{{ s|add:s|add:s|add:s|add:s|add:s|add:s|add:s|striptags }}{% endwith %}"
    assert "striptags got 8,000 characters; at most 1,000" in refused(body=source).message


# --- size ---------------------------------------------------------------------------------------------


def test_a_part_larger_than_the_size_limit_is_refused_even_as_plain_text(settings):
    settings.TEMPLATE_MAX_SIZE = 5_000
    problem = refused("html_body", html_body="<p>" + "x" * 5_000 + "</p>")
    assert "renders to 5,007 characters, more than 5,000 (TEMPLATE_MAX_SIZE)" in problem.message


def test_loop_output_counts_towards_the_size_limit(settings):
    settings.TEMPLATE_MAX_SIZE = 5_000
    source = f"{{% for a in {LIST_1000} %}}{{{{ member.email }}}}{{% endfor %}}"
    problem = refused(body=source)
    assert "TEMPLATE_MAX_SIZE" in problem.message


def test_filters_that_process_a_lot_in_a_loop_stop_at_the_work_limit(settings):
    settings.TEMPLATE_MAX_SIZE = 10_000
    source = (
        "{% with s='x'|ljust:1000 %}{% with t=s|add:s|add:s|add:s|add:s %}"
        f"{{% for a in {LIST_1000} %}}{{{{ t|wordcount }}}}{{% endfor %}}"
        "{% endwith %}{% endwith %}"
    )
    assert "processed more than 100,000 characters" in refused(body=source).message


# --- loops and time -------------------------------------------------------------------------------


def test_nested_loops_are_counted_together():
    problem = refused(body=THREE_NESTED_LOOPS)
    assert "more than 10,000 loop iterations (TEMPLATE_MAX_LOOP_ITERATIONS)" in problem.message


def test_loops_up_to_the_iteration_limit_are_fine(settings):
    settings.TEMPLATE_MAX_LOOP_ITERATIONS = 110  # 10 outer + 100 inner
    ten = "'x'|ljust:'10'|make_list"
    source = f"{{% for a in {ten} %}}{{% for b in {ten} %}}.{{% endfor %}}{{% endfor %}}"
    compiled = check_templates(subject="Hi", body=source)
    assert compiled.render(member_context())[1] == "." * 100
    settings.TEMPLATE_MAX_LOOP_ITERATIONS = 109
    assert "more than 109 loop iterations" in refused(body=source).message


def test_a_render_stops_at_its_time_budget(settings):
    settings.TEMPLATE_MAX_LOOP_ITERATIONS = 10**9
    settings.TEMPLATE_RENDER_TIMEOUT = 0.2
    problem = refused(body=SLOW_LOOP)
    assert "rendering took longer than 0.2 s (TEMPLATE_RENDER_TIMEOUT)" in problem.message


def test_a_caller_can_give_several_messages_one_deadline():
    compiled = compile_burst(subject="Hi", body=f"{{% for a in {LIST_1000} %}}.{{% endfor %}}")
    with pytest.raises(TemplateProblem) as caught:
        compiled.render(member_context(), deadline=time.monotonic())
    assert caught.value.field == "body" and "TEMPLATE_RENDER_TIMEOUT" in caught.value.message


def test_a_limit_hit_inside_an_if_condition_still_fails_the_render():
    # {% if %} swallows the exceptions of its operators ('==' here).
    source = "{% if member.email|ljust:'99999999' == 'a' %}yes{% endif %}no"
    assert "ljust:99999999" in refused(body=source).message


def test_a_template_rendered_through_djangos_api_directly_is_bounded_too():
    compiled = compile_burst(subject="Hi", body=THREE_NESTED_LOOPS)
    with pytest.raises(LimitExceeded, match="loop iterations"):
        compiled.body.template.render(Context(member_context()))


# --- validation: an empty member and a filled one ---------------------------------------------------


def test_validation_renders_for_a_member_with_every_field_filled():
    body = "{% if member.middle_name %}" + THREE_NESTED_LOOPS + "{% endif %}"
    with pytest.raises(InvalidInput) as caught:
        services.burst_validate(subject="Hi", body=body)
    assert caught.value.field == "body"
    assert "every optional field filled" in caught.value.message
    assert "loop iterations" in caught.value.message


def test_validation_names_the_field_that_hits_a_limit():
    with pytest.raises(InvalidInput) as caught:
        services.burst_validate(subject="{{ member.email|rjust:'5000' }}", body="Hello")
    assert caught.value.field == "subject"
    assert "rjust:5000" in caught.value.message


def test_a_template_that_explodes_for_one_member_only_passes_validation():
    check_templates(subject="Hi", body=MALLORY_BOMB, html_body=f"<p>{MALLORY_BOMB}</p>")


@pytest.mark.django_db
def test_the_preview_for_a_member_who_hits_a_limit_is_invalid_input_naming_the_field():
    mallory = Member.objects.create_user(username="mallory", email="m@example.test", first_name="Mallory")
    burst = services.burst_create(subject="Hi", body=MALLORY_BOMB, sender="news@example.org")
    with pytest.raises(InvalidInput) as caught:
        selectors.burst_preview(burst_id=burst.pk, member_id=mallory.pk)
    assert caught.value.field == "body" and "loop iterations" in caught.value.message


# --- at send time --------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_member_who_hits_a_limit_at_send_time_is_other_error_and_the_rest_are_sent(
    settings, smtp_settings, immediate_huey
):
    settings.EMAIL_RATE_LIMIT = None
    names = ["Ada", "Mallory", "Grace"]
    members = [
        Member.objects.create_user(username=n.lower(), email=f"{n.lower()}@example.test", first_name=n)
        for n in names
    ]
    burst = services.burst_create(
        subject="Hi {{ member.first_name }}",
        body=MALLORY_BOMB,
        sender="news@example.org",
        recipient_ids=[m.pk for m in members],
    )

    services.burst_send(burst_id=burst.pk)

    statuses = dict(Delivery.objects.filter(burst=burst).values_list("email", "status"))
    assert statuses == {
        "ada@example.test": DeliveryStatus.SENT,
        "mallory@example.test": DeliveryStatus.OTHER_ERROR,
        "grace@example.test": DeliveryStatus.SENT,
    }
    bad = Delivery.objects.get(burst=burst, email="mallory@example.test")
    assert bad.error_message == (
        "Could not render the message: body: more than 10,000 loop iterations (TEMPLATE_MAX_LOOP_ITERATIONS)"
    )
    assert bad.attempts == 0
    assert sorted(m.rcpt_tos for m in smtp_settings.messages) == [
        ("ada@example.test",),
        ("grace@example.test",),
    ]
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT


@pytest.mark.django_db(transaction=True)
def test_a_stored_template_that_no_longer_compiles_fails_its_deliveries_instead_of_retrying(
    settings, smtp_settings, immediate_huey
):
    settings.EMAIL_RATE_LIMIT = None
    member = Member.objects.create_user(username="ada", email="ada@example.test", first_name="Ada")
    burst = services.burst_create(
        subject="Hi", body="Hello", sender="news@example.org", recipient_ids=[member.pk]
    )
    # Already sending when the `now` format became bounded.
    EmailBurst.objects.filter(pk=burst.pk).update(
        status=BurstStatus.SENDING, body="{% now '" + "r" * 200 + "' %}"
    )

    services.burst_create_deliveries(burst_id=burst.pk)  # and its chunk, inline

    delivery = Delivery.objects.get(burst=burst)
    assert delivery.status == DeliveryStatus.OTHER_ERROR
    assert delivery.error_message.startswith("Could not compile the message: body: template error")
    assert smtp_settings.messages == []


@pytest.mark.parametrize(
    "source",
    [
        "{% for c in member.first_name|make_list %}{{ forloop.counter }}/{{ forloop.revcounter0 }}"
        "{% if forloop.first %}F{% endif %}{% if forloop.last %}L{% endif %}{{ c }} {% endfor %}",
        "{% for c in member.first_name reversed %}{{ c }}{% empty %}none{% endfor %}",
        "{% for c in member.middle_name %}{{ c }}{% empty %}none{% endfor %}",
        "{% for k, v in member.items %}{{ k }}={{ v }};{% endfor %}",
        "{% for a in 'ab'|make_list %}{% for b in 'xy'|make_list %}"
        "{{ forloop.parentloop.counter }}{{ a }}{{ b }}{% cycle ',' ';' %}{% endfor %}{% endfor %}",
    ],
)
def test_bounded_loops_render_exactly_what_djangos_loops_render(source):
    from django.template import Engine

    context = member_context(first_name="Ada", last_name="Lovelace", email="ada@example.test")
    compiled = compile_burst(subject="Hi", body=source, html_body=source)
    stock = Engine(libraries={})  # Django's own tags

    assert compiled.body.render(Context(context, autoescape=False)) == stock.from_string(source).render(
        Context(context, autoescape=False)
    )
    assert compiled.render(context)[2] == stock.from_string(source).render(Context(context))
