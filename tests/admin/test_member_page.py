"""A member's admin page is about the member (SPEC 12, issue points 8 and 9): a "Profile"
tab with the subscription switch, the delivery timeline under it with every try of each
delivery (read in a constant number of queries), sign-in and rights on a second tab
that only a superuser sees in full; and the sidebar shows mailing first, Django's
groups and the API's token tables only to superusers, under "Administration"."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.models import BurstStatus, DeliveryAttempt, DeliveryStatus
from campaigns.vocabulary import STATUS_LABELS
from members.models import Member
from tests.admin.browser import login, screenshot
from tests.admin.csp_watch import csp_violations, watch_csp
from tests.admin.test_member_rights_admin import input_names, post_data
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db

MEMBERS = "/admin/members/member/"
RIGHTS = {"is_staff", "is_superuser", "groups", "user_permissions"}


def change_url(member: Member) -> str:
    return f"{MEMBERS}{member.pk}/change/"


def tabs_of(response) -> list[tuple[str, set[str]]]:
    """The page's fieldsets as (title, field names), in order."""
    tabs = []
    for fieldset in response.context["adminform"]:
        assert "tab" in fieldset.classes, fieldset.name  # everything is on a tab
        names = set()
        for line in fieldset:
            for field in line:
                names.add(field.field["name"] if isinstance(field.field, dict) else field.field.name)
        tabs.append((fieldset.name, names))
    return tabs


def page_data(response, **changes) -> dict:
    """What the browser posts back: the form's fields, and the values it was shown with
    (`initial-…`, which tell a moved switch from a stale page)."""
    shown = re.findall(
        r'<input type="hidden" name="(initial-[^"]+)" value="([^"]*)"', response.content.decode()
    )
    return {**dict(shown), **post_data(response, **changes)}


def timeline_of(response) -> str:
    html = response.content.decode()
    return html[html.index('id="delivery-timeline"') :]


def attempt(delivery, at, reply: str, *, outcome=DeliveryStatus.FAILED, will_retry=True) -> DeliveryAttempt:
    return DeliveryAttempt.objects.create(
        delivery=delivery,
        burst_id=delivery.burst_id,
        attempted_at=at,
        outcome=outcome,
        will_retry=will_retry,
        reply=reply,
    )


# --- tabs: profile first, account for superusers only -------------------------------------------------


def test_a_superuser_sees_profile_then_account_with_the_rights(root_client, member):
    response = root_client.get(change_url(member))

    assert response.status_code == 200
    [(first, profile), (second, account)] = tabs_of(response)
    assert first == "Profile" and second == "Account"
    assert profile == {
        "username",
        "email",
        "first_name",
        "middle_name",
        "last_name",
        "birth_date",
        "is_verified",
        "subscribed",
        "lists_display",
    }
    assert account == {"password", "is_active", "last_login", "date_joined", *RIGHTS}
    assert RIGHTS <= input_names(response)


def test_other_staff_see_a_sign_in_tab_and_no_rights_at_all(editor_client, member):
    response = editor_client.get(change_url(member))

    [(first, profile), (second, sign_in)] = tabs_of(response)
    assert (first, second) == ("Profile", "Sign-in")
    assert "subscribed" in profile and "email" in profile
    assert sign_in == {"password", "is_active", "last_login", "date_joined"}
    html = response.content.decode()
    assert not RIGHTS & input_names(response)
    assert "Permissions" not in html and "Superuser status" not in html
    assert ">Account<" not in html


def test_a_staff_accounts_page_shows_other_staff_no_password_at_all(editor_client, superuser):
    colleague = Member.objects.create_user("cleo", "cleo@example.test", is_staff=True)
    for account in (colleague, superuser):
        response = editor_client.get(change_url(account))
        [_, (title, sign_in)] = tabs_of(response)
        assert title == "Sign-in"
        assert "password" not in sign_in and "is_active" in sign_in  # shown read-only
        assert "is_active" not in input_names(response)


def test_the_timeline_comes_right_after_the_form_and_the_summary_before_it(root_client, member):
    DeliveryFactory(burst=BurstFactory(subject="Spring letter", status=BurstStatus.SENT), member=member)
    html = root_client.get(change_url(member)).content.decode()

    summary, form = html.index('id="member-summary"'), html.index('id="member_form"')
    form_end = html.index("</form>", form)
    timeline = html.index('id="delivery-timeline"')
    assert summary < form < form_end < timeline
    # nothing but the closing of the form's container between the form and the timeline
    assert "<fieldset" not in html[form_end:timeline] and "<input" not in html[form_end:timeline]


def test_the_add_form_still_asks_only_for_a_username_an_address_and_a_password(root_client):
    page = root_client.get(f"{MEMBERS}add/")
    assert page.status_code == 200
    assert {"username", "email", "password1", "password2"} <= input_names(page)
    assert not RIGHTS & input_names(page) and "subscribed" not in input_names(page)

    response = root_client.post(
        f"{MEMBERS}add/",
        {
            "username": "newbie",
            "email": "newbie@example.test",
            "password1": "Fresh-pass-4321",
            "password2": "Fresh-pass-4321",
        },
    )

    assert response.status_code == 302
    newbie = Member.objects.get(username="newbie")
    assert response["Location"] == change_url(newbie)
    assert newbie.unsubscribed_at is None
    assert root_client.get(change_url(newbie)).status_code == 200


# --- subscription ------------------------------------------------------------------------------------


def unsubscribed_at(member: Member):
    return Member.objects.values_list("unsubscribed_at", flat=True).get(pk=member.pk)


@pytest.mark.parametrize("client_fixture", ["root_client", "editor_client"])
def test_the_subscription_switch_unsubscribes_and_subscribes_again(client_fixture, request, member):
    client = request.getfixturevalue(client_fixture)
    page = client.get(change_url(member))
    assert page.context["adminform"].form["subscribed"].value() is True
    data = page_data(page)
    data.pop("subscribed")

    assert client.post(change_url(member), data).status_code == 302

    since = unsubscribed_at(member)
    assert since is not None
    page = client.get(change_url(member))
    assert page.context["adminform"].form["subscribed"].value() is False
    html = page.content.decode()
    assert f"Unsubscribed since {timezone.localtime(since):%Y-%m-%d %H:%M}" in html
    assert 'id="member-unsubscribed-since"' in html

    assert client.post(change_url(member), page_data(page, subscribed="on")).status_code == 302
    assert unsubscribed_at(member) is None


def test_a_post_without_the_shown_value_leaves_the_subscription_alone(root_client, member):
    Member.objects.filter(pk=member.pk).update(unsubscribed_at=timezone.now())
    page = root_client.get(change_url(member))

    response = root_client.post(change_url(member), post_data(page, subscribed="on", first_name="Augusta"))

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.first_name == "Augusta" and member.unsubscribed_at is not None


def test_a_save_that_does_not_touch_the_switch_keeps_an_unsubscribe_made_meanwhile(root_client, member):
    page = root_client.get(change_url(member))  # read while subscribed
    Member.objects.filter(pk=member.pk).update(unsubscribed_at=timezone.now())  # the member's link

    response = root_client.post(change_url(member), page_data(page, first_name="Augusta"))

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.first_name == "Augusta"
    assert member.unsubscribed_at is not None


def test_a_superusers_page_shows_other_staff_the_subscription_read_only(editor_client, superuser):
    Member.objects.filter(pk=superuser.pk).update(unsubscribed_at=timezone.now())
    response = editor_client.get(change_url(superuser))

    assert response.status_code == 200
    assert "subscribed" not in input_names(response)
    assert "Unsubscribed" in response.content.decode()


# --- the timeline, with every try ---------------------------------------------------------------------


def test_each_try_of_a_delivery_is_listed_under_it_oldest_first(root_client, member):
    now = timezone.now()
    greylisted = DeliveryFactory(
        burst=BurstFactory(subject="Greylisted letter", status=BurstStatus.SENT),
        member=member,
        status=DeliveryStatus.SENT,
        attempts=2,
        sent_at=now,
    )
    attempt(greylisted, now - timedelta(minutes=5), "451 4.7.1 Greylisted, try again later (at RCPT)")
    full = DeliveryFactory(
        burst=BurstFactory(subject="Full letter", status=BurstStatus.SENT),
        member=member,
        status=DeliveryStatus.FAILED,
        attempts=2,
        error_message="552 5.2.2 Mailbox full (at RCPT)",
    )
    attempt(full, now - timedelta(minutes=3), "452 4.2.2 Mailbox full (at RCPT)")
    attempt(full, now - timedelta(minutes=1), "552 5.2.2 Mailbox full (at RCPT)", will_retry=False)

    timeline = timeline_of(root_client.get(change_url(member)))

    items = re.findall(r'<li class="timeline-item.*?</ol>\s*</li>', timeline, re.S)
    assert len(items) == 2
    full_item, greylisted_item = items  # newest delivery first
    lines = re.findall(r'class="timeline-attempt[^"]*" data-outcome="(\w+)"', greylisted_item)
    assert lines == ["failed", "sent"]
    assert greylisted_item.index("451 4.7.1 Greylisted") < greylisted_item.index(">Sent<")
    assert "will retry" in greylisted_item
    assert f"{timezone.localtime(now - timedelta(minutes=5)):%H:%M:%S}" in greylisted_item
    assert re.findall(r'data-outcome="(\w+)"', full_item) == ["failed", "failed"]
    steps = full_item[full_item.index("timeline-attempts") :]
    assert steps.index("452 4.2.2") < steps.index("552 5.2.2")
    assert full_item.count("will retry") == 1
    assert STATUS_LABELS[DeliveryStatus.FAILED] in full_item  # the one word for the status


def test_a_delivery_waiting_for_a_retry_says_when(root_client, member):
    now = timezone.now()
    waiting = DeliveryFactory(
        burst=BurstFactory(subject="Waiting letter", status=BurstStatus.SENDING),
        member=member,
        status=DeliveryStatus.PENDING,
        attempts=1,
        next_attempt_at=now + timedelta(minutes=2),
    )
    attempt(waiting, now, "421 4.3.2 Try later")

    timeline = timeline_of(root_client.get(change_url(member)))

    assert re.findall(r'data-outcome="(\w+)"', timeline) == ["failed", "pending"]
    assert "Next try" in timeline and f"{timezone.localtime(now + timedelta(minutes=2)):%H:%M:%S}" in timeline


def test_a_delivery_that_says_it_all_gets_no_try_lines(root_client, member):
    DeliveryFactory(burst=BurstFactory(status=BurstStatus.SENT), member=member, status=DeliveryStatus.SENT)
    refused = DeliveryFactory(
        burst=BurstFactory(status=BurstStatus.SENT),
        member=member,
        status=DeliveryStatus.NOT_FOUND,
        error_message="550 5.1.1 User unknown (at RCPT)",
    )
    attempt(refused, timezone.now(), "550 5.1.1 User unknown (at RCPT)", will_retry=False)

    timeline = timeline_of(root_client.get(change_url(member)))

    assert timeline.count('class="timeline-item') == 2
    assert "timeline-attempt" not in timeline
    assert timeline.count("550 5.1.1 User unknown") == 1


def member_with_history(deliveries: int, tries: int) -> Member:
    person = MemberFactory()
    now = timezone.now()
    for i in range(deliveries):
        delivery = DeliveryFactory(
            burst=BurstFactory(subject=f"Letter {i}", status=BurstStatus.SENT),
            member=person,
            status=DeliveryStatus.SENT,
            attempts=tries + 1,
        )
        for n in range(tries):
            attempt(delivery, now - timedelta(minutes=10 - n), f"451 4.7.1 Greylisted ({n})")
    return person


def test_the_page_costs_the_same_queries_for_one_delivery_or_many_with_many_tries(root_client):
    small, large = member_with_history(1, 1), member_with_history(30, 3)
    root_client.get(change_url(small))  # warm caches (content types, session)

    counts = []
    for person in (small, large):
        with CaptureQueriesContext(connection) as queries:
            response = root_client.get(change_url(person))
        assert response.status_code == 200
        counts.append(len(queries))

    assert counts[0] == counts[1]
    assert timeline_of(response).count('class="timeline-attempt ') == 30 * 4


# --- the sidebar --------------------------------------------------------------------------------------


def sidebar(response) -> str:
    html = response.content.decode()
    return html[html.index('id="nav-sidebar-apps"') :]


def test_the_sidebar_shows_mailing_first_and_administration_to_superusers_only(root_client, editor_client):
    root = sidebar(root_client.get("/admin/"))
    assert root.index("Mailing") < root.index("Email bursts") < root.index("Administration")
    for link in (
        "/admin/campaigns/emailburst/",
        "/admin/campaigns/delivery/",
        "/admin/members/member/",
        "/admin/auth/group/",
        "/admin/token_blacklist/outstandingtoken/",
        "/admin/token_blacklist/blacklistedtoken/",
    ):
        assert f'href="{link}"' in root, link
    assert root.index('href="/admin/members/member/"') < root.index('href="/admin/auth/group/"')

    staff = sidebar(editor_client.get("/admin/"))
    assert 'href="/admin/members/member/"' in staff
    assert "Administration" not in staff and "/admin/auth/group/" not in staff
    assert "token_blacklist" not in staff


def test_no_page_lists_all_applications(root_client):
    html = root_client.get("/admin/").content.decode()
    assert "All applications" not in html


# --- in chromium: screenshots looked at by a person ----------------------------------------------------


def tab_link(page, title: str):
    """A tab of the member form (unfold's tabs are links without an address)."""
    return page.locator("#member_form nav > a").filter(has_text=re.compile(rf"^\s*{title}\s*$"))


@pytest.fixture
def member_with_a_story(db) -> Member:
    person = MemberFactory(
        username="grace",
        email="grace.hopper@example.test",
        first_name="Grace",
        middle_name="Brewster",
        last_name="Hopper",
        is_verified=True,
    )
    now = timezone.now()
    DeliveryFactory(
        burst=BurstFactory(subject="Autumn walk", status=BurstStatus.SENT),
        member=person,
        status=DeliveryStatus.SENT,
        sent_at=now - timedelta(days=30),
    )
    sent = DeliveryFactory(
        burst=BurstFactory(subject="Spring programme", name="Spring programme 2026", status=BurstStatus.SENT),
        member=person,
        status=DeliveryStatus.SENT,
        attempts=2,
        sent_at=now - timedelta(hours=2),
    )
    attempt(sent, now - timedelta(hours=2, minutes=5), "451 4.7.1 Greylisted, try again later (at RCPT)")
    full = DeliveryFactory(
        burst=BurstFactory(subject="Winter gala", status=BurstStatus.SENT),
        member=person,
        status=DeliveryStatus.FAILED,
        attempts=3,
        error_message="552 5.2.2 Mailbox full (at RCPT)",
    )
    for minutes, will_retry in ((9, True), (7, True), (3, False)):
        attempt(
            full, now - timedelta(minutes=minutes), "552 5.2.2 Mailbox full (at RCPT)", will_retry=will_retry
        )
    return person


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_member_page_in_chromium_for_a_superuser(page, live_server, superuser, member_with_a_story):
    watch_csp(page)
    login(page, "root", "root-pass-1234")
    page.goto(change_url(member_with_a_story))
    form = page.locator("#member_form")

    # expect() waits for the page's tabs to be set up (slow on a loaded machine).
    expect(form.locator("input[name=first_name]")).to_be_visible()
    assert form.locator("input[name=subscribed]").count() == 1
    expect(form.locator("[name=is_superuser]")).to_be_hidden()  # on the Account tab
    timeline = page.locator("#delivery-timeline")
    expect(timeline).to_be_visible()
    assert timeline.locator(".timeline-attempt").count() == 2 + 3
    assert "will retry" in timeline.inner_text()
    screenshot(page, "member-page-superuser")

    tab_link(page, "Account").click()
    expect(form.locator("[name=is_superuser]")).to_be_visible()
    expect(form.locator("input[name=first_name]")).to_be_hidden()
    screenshot(page, "member-page-superuser-account-tab")

    nav = page.locator("#nav-sidebar-apps")
    assert nav.get_by_text("Administration").is_visible()
    assert csp_violations(page) == []
    assert page.js_errors == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_member_page_in_chromium_for_other_staff(page, live_server, editor, member_with_a_story):
    watch_csp(page)
    login(page, "eddie.editor", "editor-pass-1234")
    page.goto(change_url(member_with_a_story))
    form = page.locator("#member_form")

    expect(form.locator("input[name=first_name]")).to_be_visible()
    for name in RIGHTS:
        assert form.locator(f"[name={name}]").count() == 0, name
    assert tab_link(page, "Account").count() == 0
    expect(page.locator("#delivery-timeline")).to_be_visible()
    assert page.locator("#nav-sidebar-apps").get_by_text("Administration").count() == 0
    screenshot(page, "member-page-staff")

    tab_link(page, "Sign-in").click()
    expect(form.locator("[name=is_active]")).to_be_visible()
    screenshot(page, "member-page-staff-sign-in-tab")

    # switching the subscription off and saving
    tab_link(page, "Profile").click()
    switch = form.locator("input[name=subscribed]")
    expect(switch).to_be_visible()
    switch.uncheck()
    with page.expect_navigation():  # the POST's answer, not the page it was sent from
        page.locator("#submit-row button[name=_continue], button[name=_continue]").first.click()
    assert unsubscribed_at(member_with_a_story) is not None
    expect(page.locator("#member-unsubscribed-since")).to_be_visible()
    screenshot(page, "member-page-staff-unsubscribed")
    assert csp_violations(page) == []
    assert page.js_errors == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_unsubscribe_pages_in_chromium(page, live_server, settings, member_with_a_story):
    from campaigns.engine.tokens import unsubscribe_token

    settings.ORGANISATION_NAME = "The Hopper Society"
    watch_csp(page)
    page.goto(f"/unsubscribe/{unsubscribe_token(member_with_a_story.pk)}/")
    assert "The Hopper Society" in page.inner_text("main")
    screenshot(page, "unsubscribe-1-confirm")

    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_text("You are unsubscribed").wait_for()
    assert unsubscribed_at(member_with_a_story) is not None
    screenshot(page, "unsubscribe-2-done")

    page.get_by_role("button", name="Subscribe again").click()  # a CSRF-protected form
    page.get_by_text("You are subscribed again").wait_for()
    assert unsubscribed_at(member_with_a_story) is None
    assert "The Hopper Society" in page.inner_text("main")
    screenshot(page, "unsubscribe-3-subscribed-again")
    assert csp_violations(page) == []
    assert page.js_errors == []
