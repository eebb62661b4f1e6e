"""In a real browser (issue 8 point 1): a staff member who is not a superuser sees no
rights fields and no password link on their own member page, and the superuser's
password page is refused to them."""

from __future__ import annotations

import pytest

from tests.admin.browser import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_staff_members_own_page_and_the_superusers_password_page(page, live_server, editor, superuser):
    login(page, "eddie.editor", "editor-pass-1234")

    response = page.goto(f"/admin/members/member/{editor.pk}/change/")
    assert response is not None and response.status == 200
    form = page.locator("#member_form")
    form.wait_for()
    for name in ("is_superuser", "is_staff", "groups", "user_permissions", "email", "is_active", "password"):
        assert form.locator(f"[name={name}], [name={name}_old]").count() == 0, name
    assert form.locator("a[href$='password/']").count() == 0
    assert form.locator("input[name=first_name]").count() == 1  # the rest stays editable
    assert "eddie@example.test" in form.inner_text()  # shown read-only
    screenshot(page, "rights-01-own-page-without-rights")

    response = page.goto(f"/admin/members/member/{superuser.pk}/password/")
    assert response is not None and response.status == 403
    assert page.locator("input[name=password1]").count() == 0
    assert page.js_errors == []
