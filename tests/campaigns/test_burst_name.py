"""A burst's name (issue 11 point 1): staff name a burst, and where they did not,
every page, message and file name shows a readable stand-in, never template syntax."""

from __future__ import annotations

import pytest

from campaigns import services
from campaigns.models import EmailBurst, burst_display_name
from common.errors import InvalidInput
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db

TEMPLATE_SYNTAX = ("{{", "}}", "{%", "%}", "{#", "#}", "{", "}")


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello {{ member.first_name }}!", "Hello …!"),
        ("{{ member.first_name|default:'you' } news", "… news"),
        ("Hi {{ member.first_name", "Hi …"),
        ("News {% if x %}for you{% endif %}, July", "News …for you…, July"),
        ("{# a note #}Spring", "…Spring"),
        ("Plain subject", "Plain subject"),
        ("{ {broken} } agenda", "… agenda"),
    ],
)
def test_it_derives_a_readable_name_from_the_subject(subject, expected):
    name = burst_display_name(name="", subject=subject, burst_id=7)
    assert name == expected
    assert not any(syntax in name for syntax in TEMPLATE_SYNTAX)


def test_it_names_a_burst_by_number_when_the_subject_is_only_template_syntax():
    assert burst_display_name(name="", subject="{{ member.first_name }}", burst_id=7) == "Burst 7"
    assert burst_display_name(name="  ", subject="{{ x }}", burst_id=None) == "Untitled burst"


def test_a_given_name_wins_over_the_subject_and_is_one_line():
    assert burst_display_name(name="  Spring\n newsletter ", subject="Hi {{ x }}") == "Spring newsletter"


def test_str_of_a_burst_is_its_display_name():
    burst = BurstFactory(subject="News for {{ member.first_name }}", name="")
    assert str(burst) == "News for …"
    burst.name = "June newsletter"
    assert str(burst) == "June newsletter"


def test_create_and_update_keep_the_name_on_one_line(staff_user):
    burst = services.burst_create(
        name="  June\nnewsletter ", subject="Hi {{ member.first_name }}", body="Hello", created_by=staff_user
    )
    assert burst.name == "June newsletter"
    services.burst_update(burst_id=burst.pk, name="July newsletter")
    assert EmailBurst.objects.get(pk=burst.pk).name == "July newsletter"


def test_a_name_over_200_characters_is_refused(staff_user):
    with pytest.raises(InvalidInput) as refused:
        services.burst_create(name="x" * 201, subject="Hi", body="Hello", created_by=staff_user)
    assert refused.value.field == "name"


def test_a_duplicate_is_named_after_its_original(staff_user):
    original = services.burst_create(
        subject="Hi {{ member.first_name }}", body="Hello", created_by=staff_user
    )
    copy = services.burst_duplicate(burst_id=original.pk)
    assert copy.name == "Hi … (copy)"


def test_admin_pages_and_export_file_names_show_the_name_not_the_template(client, superuser):
    client.force_login(superuser)
    member = MemberFactory()
    burst = BurstFactory(subject="Hello {{ member.first_name }}, news", name="", status="sent")
    DeliveryFactory.create_for(burst, [member], status="sent")
    listing = client.get("/admin/campaigns/emailburst/").content.decode()
    assert "Hello …, news" in listing
    page = client.get(f"/admin/campaigns/emailburst/{burst.pk}/change/").content.decode()
    assert "Hello …, news" in page
    export = client.get(f"/admin/campaigns/emailburst/{burst.pk}/report/csv/")
    assert export.status_code == 200
    assert f'filename="burst-{burst.pk}-hello-news-deliveries.csv"' in export["Content-Disposition"]
    assert "Hello …, news" in export.content.decode()
