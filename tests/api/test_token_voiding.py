"""A password change or a deactivation voids every refresh token issued before it
(issue 15 point 4): over the API, and after the admin's password change."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.api.conftest import Api, access_token

pytestmark = pytest.mark.django_db


def login(username: str, password: str) -> dict:
    response = Api().post("/api/login/", {"username": username, "password": password})
    assert response.status_code == 200, response.content
    return response.json()


def refresh(token: str):
    return Api().post("/api/token/refresh/", {"refresh": token})


def test_a_password_set_over_the_api_voids_the_refresh_tokens_issued_before(staff_user, superuser):
    before = login("sam.staff", "staff-pass-1234")
    root = Api(access_token(superuser))
    response = root.patch(f"/api/staff/{staff_user.pk}/", {"password": "a-new-pass-5678"})
    assert response.status_code == 200, response.content

    assert refresh(before["refresh"]).status_code == 401
    after = login("sam.staff", "a-new-pass-5678")
    assert refresh(after["refresh"]).status_code == 200


def test_the_admins_own_password_change_voids_the_refresh_tokens_issued_before(staff_user):
    before = login("sam.staff", "staff-pass-1234")
    browser = Client()
    browser.force_login(staff_user)
    response = browser.post(
        "/admin/password_change/",
        {
            "old_password": "staff-pass-1234",
            "new_password1": "Another-pass-9876",
            "new_password2": "Another-pass-9876",
        },
    )
    assert response.status_code == 302, response.content[:500]

    assert refresh(before["refresh"]).status_code == 401
    assert refresh(login("sam.staff", "Another-pass-9876")["refresh"]).status_code == 200


def test_a_deactivation_voids_them_even_after_the_member_is_active_again(staff_user, superuser):
    before = login("sam.staff", "staff-pass-1234")
    staff_user.is_active = False  # through a save, as the admin and the API do
    staff_user.save()
    assert refresh(before["refresh"]).status_code == 401
    staff_user.is_active = True
    staff_user.save()

    assert refresh(before["refresh"]).status_code == 401
    assert refresh(login("sam.staff", "staff-pass-1234")["refresh"]).status_code == 200


def test_a_refresh_token_without_the_password_stamp_is_refused(staff_user):
    from ninja_jwt.tokens import RefreshToken

    forged_elsewhere = str(RefreshToken.for_user(staff_user))  # signed, but not issued by our login
    assert refresh(forged_elsewhere).status_code == 401
