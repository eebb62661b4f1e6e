"""Rights in the admin (issue 8 points 1 and 2): a staff member with
`members.change_member` but not superuser is not offered, and cannot post, the rights
or the sign-in of a staff user or a superuser; they change their own password only with
the current one; only a superuser deletes staff; groups are the superuser's; an import
never changes a staff user or a superuser."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.forms import MultiWidget
from django.test import Client

from members.models import Member
from members.resources import STAFF_ROW_REFUSED
from tests.admin.test_members_admin import (
    confirm,
    figures,
    messages_of,
    rejected_reasons,
    report_of,
    run_action,
    upload,
)

pytestmark = pytest.mark.django_db

MEMBERS = "/admin/members/member/"
RIGHTS_INPUTS = ("is_staff", "is_superuser", "groups", "user_permissions")
NEW_PASSWORD = "Taken-over-4321"


@pytest.fixture
def colleague(db) -> Member:
    return Member.objects.create_user(
        "cleo", "cleo@example.test", password="cleo-pass-1234", is_staff=True, first_name="Cleo"
    )


@pytest.fixture
def send_permission() -> Permission:
    return Permission.objects.get(codename="send_emailburst")


def change_url(member: Member) -> str:
    return f"{MEMBERS}{member.pk}/change/"


def input_names(response) -> set[str]:
    return set(re.findall(r'name="([^"]+)"', response.content.decode()))


def post_data(response, **changes) -> dict:
    """What the browser would post back from the change page, with ``changes`` applied."""
    form = response.context["adminform"].form
    data: dict = {}
    for name, field in form.fields.items():
        if field.disabled:
            continue
        value = form[name].value()
        widget = field.widget
        if isinstance(widget, MultiWidget):
            parts = value if isinstance(value, list) else widget.decompress(value)
            for suffix, sub, part in zip(widget.widgets_names, widget.widgets, parts, strict=True):
                data[f"{name}{suffix}"] = sub.format_value(part) or ""
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, list | tuple):
            data[name] = [str(v) for v in value]
        else:
            data[name] = "" if value is None else widget.format_value(value) or ""
    data.update(changes)
    return data


# --- the member page ----------------------------------------------------------------------------


def test_a_staff_members_own_page_offers_no_rights_and_no_password(editor_client, editor):
    response = editor_client.get(change_url(editor))
    assert response.status_code == 200
    names = input_names(response)
    assert not names & {*RIGHTS_INPUTS, "email", "is_active", "username"}
    assert "first_name" in names  # the rest stays editable
    form = response.context["adminform"].form
    assert not set(form.fields) & {*RIGHTS_INPUTS, "email", "is_active", "username"}
    html = response.content.decode()
    assert "../password/" not in html and f"{editor.pk}/password/" not in html
    assert "eddie@example.test" in html  # shown, read-only


def test_posting_rights_to_ones_own_page_changes_none_of_them(editor_client, editor, send_permission):
    group = Group.objects.create(name="senders")
    group.permissions.add(send_permission)
    page = editor_client.get(change_url(editor))
    response = editor_client.post(
        change_url(editor),
        post_data(
            page,
            first_name="Eddie",
            is_superuser="on",
            is_staff="on",
            is_active="",
            email="evil@example.test",
            username="root2",
            user_permissions=[str(send_permission.pk)],
            groups=[str(group.pk)],
        ),
    )
    assert response.status_code == 302, response.content[:2000]
    editor = Member.objects.get(pk=editor.pk)
    assert editor.first_name == "Eddie"  # the post was accepted ...
    assert not editor.is_superuser and editor.is_staff and editor.is_active  # ... but no right moved
    assert editor.email == "eddie@example.test" and editor.username == "eddie.editor"
    assert not editor.groups.exists()
    assert not editor.has_perm("campaigns.send_emailburst")


def test_a_colleagues_page_shows_sign_in_read_only(editor_client, colleague):
    page = editor_client.get(change_url(colleague))
    assert not input_names(page) & {*RIGHTS_INPUTS, "email", "is_active", "username"}
    assert "../password/" not in page.content.decode()
    response = editor_client.post(
        change_url(colleague), post_data(page, last_name="Patra", email="mine@example.test", is_active="")
    )
    assert response.status_code == 302
    colleague.refresh_from_db()
    assert colleague.last_name == "Patra"
    assert colleague.email == "cleo@example.test" and colleague.is_active


def test_a_page_read_before_a_promotion_cannot_change_the_new_staff_users_sign_in(editor_client, member):
    page = editor_client.get(change_url(member))  # a plain member: email and is_active offered
    Member.objects.filter(pk=member.pk).update(is_staff=True)  # a superuser promotes them meanwhile
    response = editor_client.post(
        change_url(member), post_data(page, email="mine@example.test", is_active="")
    )
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.is_staff and member.is_active and member.email == "ada@example.test"


def test_a_superusers_page_is_view_only_for_other_staff(editor_client, superuser):
    page = editor_client.get(change_url(superuser))
    assert page.status_code == 200
    assert not input_names(page) & {*RIGHTS_INPUTS, "email", "is_active", "first_name"}
    response = editor_client.post(change_url(superuser), {"first_name": "Evil", "is_superuser": ""})
    assert response.status_code == 403
    superuser.refresh_from_db()
    assert superuser.first_name == "" and superuser.is_superuser


def test_a_plain_members_page_offers_sign_in_but_no_rights(editor_client, member):
    page = editor_client.get(change_url(member))
    names = input_names(page)
    assert {"email", "is_active", "username"} <= names
    assert not names & set(RIGHTS_INPUTS)
    assert "../password/" in page.content.decode()  # a plain member's password may be set
    response = editor_client.post(change_url(member), post_data(page, is_staff="on", is_superuser="on"))
    assert response.status_code == 302
    member.refresh_from_db()
    assert not member.is_staff and not member.is_superuser


def test_a_superuser_is_offered_everything(root_client, editor, send_permission):
    page = root_client.get(change_url(editor))
    assert {*RIGHTS_INPUTS, "email", "is_active", "username"} <= input_names(page)
    assert "../password/" in page.content.decode()
    response = root_client.post(
        change_url(editor), post_data(page, user_permissions=[str(send_permission.pk)], is_superuser="on")
    )
    assert response.status_code == 302
    editor = Member.objects.get(pk=editor.pk)
    assert editor.is_superuser and editor.user_permissions.filter(pk=send_permission.pk).exists()


# --- password pages ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["superuser", "colleague"])
def test_the_password_page_of_a_staff_account_is_refused(editor_client, target, request):
    account = request.getfixturevalue(target)
    url = f"{MEMBERS}{account.pk}/password/"
    assert editor_client.get(url).status_code == 403
    response = editor_client.post(url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 403
    account.refresh_from_db()
    assert not account.check_password(NEW_PASSWORD)


def test_a_plain_members_password_may_be_set_by_staff(editor_client, member):
    url = f"{MEMBERS}{member.pk}/password/"
    assert editor_client.get(url).status_code == 200
    response = editor_client.post(
        url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "set_usable_password": "true"}
    )
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD)


@pytest.mark.parametrize(
    "client_fixture, user_fixture", [("editor_client", "editor"), ("root_client", "superuser")]
)
def test_ones_own_password_page_is_the_form_that_asks_for_the_current_one(
    client_fixture, user_fixture, request
):
    client, user = request.getfixturevalue(client_fixture), request.getfixturevalue(user_fixture)
    response = client.get(f"{MEMBERS}{user.pk}/password/")
    assert response.status_code == 302 and response["Location"] == "/admin/password_change/"
    form = client.get("/admin/password_change/")
    assert "old_password" in input_names(form)
    refused = client.post(
        "/admin/password_change/",
        {"old_password": "not-it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert refused.status_code == 200 and "old_password" in refused.context["form"].errors
    user.refresh_from_db()
    assert not user.check_password(NEW_PASSWORD)


def test_the_site_password_change_works_with_the_current_password(editor_client, editor):
    response = editor_client.post(
        "/admin/password_change/",
        {"old_password": "editor-pass-1234", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    editor.refresh_from_db()
    assert editor.check_password(NEW_PASSWORD)


# --- add, delete, bulk actions ----------------------------------------------------------------


def test_a_staff_member_adds_only_plain_members(editor_client):
    page = editor_client.get(f"{MEMBERS}add/")
    assert not input_names(page) & set(RIGHTS_INPUTS)
    response = editor_client.post(
        f"{MEMBERS}add/",
        {
            "username": "newbie",
            "email": "newbie@example.test",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            "is_staff": "on",
            "is_superuser": "on",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    newbie = Member.objects.get(username="newbie")
    assert not newbie.is_staff and not newbie.is_superuser


@pytest.mark.parametrize("target", ["superuser", "colleague"])
def test_only_a_superuser_deletes_staff(editor_client, root_client, target, request):
    account = request.getfixturevalue(target)
    url = f"{MEMBERS}{account.pk}/delete/"
    assert editor_client.get(url).status_code == 403
    assert editor_client.post(url, {"post": "yes"}).status_code == 403
    assert Member.objects.filter(pk=account.pk).exists()
    if target == "colleague":
        assert root_client.post(url, {"post": "yes"}).status_code == 302
        assert not Member.objects.filter(pk=account.pk).exists()


def test_delete_selected_refuses_a_selection_with_staff(editor_client, member, colleague):
    confirm_page = editor_client.post(
        MEMBERS, {"action": "delete_selected", "_selected_action": [member.pk, colleague.pk]}
    )
    assert confirm_page.status_code == 200
    assert confirm_page.context["perms_lacking"]
    response = editor_client.post(
        MEMBERS, {"action": "delete_selected", "_selected_action": [member.pk, colleague.pk], "post": "yes"}
    )
    assert response.status_code == 403
    assert Member.objects.filter(pk__in=[member.pk, colleague.pk]).count() == 2
    # a selection of plain members is deleted
    response = editor_client.post(
        MEMBERS, {"action": "delete_selected", "_selected_action": [member.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert not Member.objects.filter(pk=member.pk).exists()


def test_no_bulk_action_touches_an_account(editor_client, colleague):
    """The member actions change mailing state only; none deactivates or promotes anyone."""
    page = editor_client.get(MEMBERS)
    actions = {value for value, _ in page.context["action_form"].fields["action"].choices if value}
    assert actions == {
        "delete_selected",
        "mark_verified",
        "unsubscribe",
        "resubscribe",
        "add_to_list",
        "remove_from_list",
        "new_burst_to_selected",
    }
    response = run_action(editor_client, "unsubscribe", [colleague])
    assert "1 member unsubscribed." in messages_of(response)
    colleague.refresh_from_db()
    assert colleague.unsubscribed_at is not None and colleague.is_active and colleague.is_staff


# --- groups ---------------------------------------------------------------------------------------


def test_groups_are_changed_by_superusers_only(editor, send_permission, root_client):
    editor.user_permissions.add(*Permission.objects.filter(content_type__app_label="auth"))
    group = Group.objects.create(name="editors")
    editor.groups.add(group)
    client = Client()
    client.force_login(editor)
    url = f"/admin/auth/group/{group.pk}/change/"
    assert client.get(url).status_code == 200  # view only
    response = client.post(url, {"name": "editors", "permissions": [str(send_permission.pk)]})
    assert response.status_code == 403
    assert client.get("/admin/auth/group/add/").status_code == 403
    assert client.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"}).status_code == 403
    assert not Member.objects.get(pk=editor.pk).has_perm("campaigns.send_emailburst")
    response = root_client.post(url, {"name": "editors", "permissions": [str(send_permission.pk)]})
    assert response.status_code == 302
    assert Member.objects.get(pk=editor.pk).has_perm("campaigns.send_emailburst")


# --- import -----------------------------------------------------------------------------------------


def reasons(preview) -> dict[int, str]:
    """Rejected rows by line of the file (the header is line 1)."""
    return rejected_reasons(preview)


@pytest.mark.parametrize("client_fixture", ["editor_client", "root_client"])
def test_an_import_never_changes_a_staff_user_or_a_superuser(
    client_fixture, request, superuser, editor, colleague, member
):
    client = request.getfixturevalue(client_fixture)
    content = (
        "email,first_name,username,is_active\n"
        "ROOT@EXAMPLE.TEST,Renamed,rooty,\n"  # the superuser, in another case
        "Cleo@Example.Test,,,no\n"  # deactivating a staff member
        "eddie@example.test,Ed,,\n"  # the editor (staff) too
        "ada@example.test,Augusta,,\n"  # a plain member: updated
    )
    preview = upload(client, content)
    assert figures(preview) == (0, 1, 0, 3)
    assert set(reasons(preview)) == {2, 3, 4}
    assert all(STAFF_ROW_REFUSED in reason for reason in reasons(preview).values())
    html = preview.content.decode()
    assert html.count("imports never change staff users") == 3  # said per row in the dry run

    response = confirm(client, preview)
    assert figures(response) == (0, 1, 0, 3)
    superuser.refresh_from_db()
    colleague.refresh_from_db()
    member.refresh_from_db()
    assert superuser.first_name == "" and superuser.username == "root"
    assert colleague.is_active and colleague.first_name == "Cleo"
    assert Member.objects.get(pk=editor.pk).first_name == ""
    assert member.first_name == "Augusta"


def test_an_import_matches_staff_addresses_in_any_unicode_case(root_client):
    Member.objects.create_user("emile", "émile@example.test", is_staff=True)
    preview = upload(root_client, "email,first_name\nÉMILE@EXAMPLE.TEST,Imposter\n")
    # Refused either way: Django's EmailValidator takes no accented local part, and the
    # staff rule would refuse it next.
    assert set(reasons(preview)) == {2}
    assert Member.objects.filter(email__iexact="émile@example.test").count() == 1


def test_no_column_of_an_import_sets_rights_or_a_password(root_client, member, send_permission):
    group = Group.objects.create(name="senders")
    content = (
        "email,is_staff,is_superuser,password,groups,user_permissions,id,last_login\n"
        f"ada@example.test,yes,yes,{NEW_PASSWORD},{group.pk},{send_permission.pk},1,2020-01-01\n"
        f"new.one@example.test,1,1,{NEW_PASSWORD},{group.pk},{send_permission.pk},,\n"
    )
    preview = upload(root_client, content)
    ignored = set(report_of(preview)["ignored_columns"])
    assert {"is_staff", "is_superuser", "password", "groups", "user_permissions"} <= ignored
    confirm(root_client, preview)
    for account in Member.objects.filter(email__in=["ada@example.test", "new.one@example.test"]):
        assert not account.is_staff and not account.is_superuser
        assert not account.groups.exists() and not account.user_permissions.exists()
        assert not account.check_password(NEW_PASSWORD)
    assert not Member.objects.get(email="new.one@example.test").has_usable_password()


def test_an_xlsx_import_refuses_staff_rows_too(root_client, colleague):
    import io

    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["email", "is_active"])
    book.active.append(["CLEO@example.test", 0])
    buffer = io.BytesIO()
    book.save(buffer)
    response = root_client.post(
        "/admin/members/member/import/",
        {"import_file": SimpleUploadedFile("m.xlsx", buffer.getvalue())},
        follow=True,
    )
    assert STAFF_ROW_REFUSED in reasons(response)[2] and set(reasons(response)) == {2}
    colleague.refresh_from_db()
    assert colleague.is_active
