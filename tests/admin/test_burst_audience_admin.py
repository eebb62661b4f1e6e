"""The burst form's audience (issue 12 point 3): lists, segments and exclusions on
the form, saved through the services, and the live number it would mail."""

from __future__ import annotations

import pytest

from campaigns.models import EmailBurst
from members import services as member_services
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

ADD = "/admin/campaigns/emailburst/add/"
COUNT = "/admin/campaigns/emailburst/audience-count/"


@pytest.fixture
def audience():
    people = MemberFactory.create_bulk(5, prefix="p", is_verified=False)
    board = member_services.mailing_list_create(name="Board")
    out = member_services.mailing_list_create(name="Out")
    member_services.list_members_add(list_id=board.pk, member_ids=[p.pk for p in people[:4]])
    member_services.list_members_add(list_id=out.pk, member_ids=[people[0].pk])
    verified = member_services.segment_create(
        name="Verified",
        rules={"match": "all", "conditions": [{"field": "is_verified", "op": "is", "value": True}]},
    )
    return people, board, out, verified


def form_data(**extra):
    data = {
        "name": "Board letter",
        "subject": "Hello {{ member.first_name }}",
        "body": "Hi {{ unsubscribe_url }}",
        "html_body": "",
        "sender": "noreply@example.test",
        "from_name": "",
        "reply_to": "",
        "attachments-TOTAL_FORMS": "0",
        "attachments-INITIAL_FORMS": "0",
        "attachments-MIN_NUM_FORMS": "0",
        "attachments-MAX_NUM_FORMS": "1000",
    }
    data.update(extra)
    return data


def test_the_form_saves_the_name_lists_segments_and_exclusions(root_client, audience):
    people, board, out, verified = audience
    response = root_client.post(
        ADD, form_data(lists=[board.pk], segments=[verified.pk], exclude_lists=[out.pk]), follow=True
    )
    assert response.status_code == 200
    burst = EmailBurst.objects.get()
    assert burst.name == "Board letter"
    assert list(burst.lists.values_list("pk", flat=True)) == [board.pk]
    assert list(burst.segments.values_list("pk", flat=True)) == [verified.pk]
    assert list(burst.exclude_lists.values_list("pk", flat=True)) == [out.pk]


def test_all_members_with_a_list_is_an_error_on_the_field(root_client, audience):
    _, board, _, _ = audience
    response = root_client.post(ADD, form_data(all_members="on", lists=[board.pk]))
    assert response.status_code == 200
    assert "already mails everyone" in response.content.decode()
    assert not EmailBurst.objects.exists()


def test_the_live_count_follows_the_audience(root_client, audience):
    people, board, out, verified = audience
    assert root_client.get(COUNT, {"lists": board.pk}).json()["count"] == 4
    assert root_client.get(COUNT, {"lists": board.pk, "exclude_lists": out.pk}).json()["count"] == 3
    both = root_client.get(COUNT, {"lists": board.pk, "recipients": people[4].pk}).json()
    assert both["count"] == 5
    assert "Would mail 5 members now" in both["text"]
    assert root_client.get(COUNT).json()["count"] == 0
    member_services.members_unsubscribe(members=type(people[1]).objects.filter(pk=people[1].pk))
    assert root_client.get(COUNT, {"lists": board.pk}).json()["count"] == 3


def test_the_form_shows_the_count_and_loads_its_script(root_client, audience):
    html = root_client.get(ADD).content.decode()
    assert 'id="audience-count"' in html and "Counting…" in html
    assert "campaigns/admin/audience_count.js" in html


def test_the_live_count_is_for_staff_only(client, audience, member):
    assert client.get(COUNT).status_code == 302  # to the login page
    client.force_login(member)
    assert client.get(COUNT).status_code == 302
