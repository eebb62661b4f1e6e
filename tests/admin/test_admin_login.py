"""The admin login is throttled like the API's, on the same counters (issue 8
point 7): 10 failures a minute per username or per address, then even the
right password is refused with a clear message."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from config.admin_login import THROTTLED_MESSAGE
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"


@pytest.fixture(autouse=True)
def fresh_counters():
    cache.clear()
    yield
    cache.clear()


def log_in(username: str, password: str, ip: str = "198.51.100.7") -> tuple[Client, str]:
    client = Client(REMOTE_ADDR=ip)
    response = client.post(LOGIN, {"username": username, "password": password})
    return client, (response.content.decode() if response.status_code == 200 else "")


def logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_ten_wrong_passwords_then_the_right_one_is_refused_with_the_message(superuser, staff_user):
    for _ in range(10):
        client, page = log_in("root", "wrong")
        assert not logged_in(client) and THROTTLED_MESSAGE not in page
    client, page = log_in("root", "root-pass-1234")
    assert not logged_in(client)
    assert THROTTLED_MESSAGE in page
    # That address is locked out for everyone; the username from any address.
    client, page = log_in("sam.staff", "staff-pass-1234")
    assert not logged_in(client) and THROTTLED_MESSAGE in page
    client, page = log_in("root", "root-pass-1234", ip="203.0.113.9")
    assert not logged_in(client) and THROTTLED_MESSAGE in page
    # Another username from another address still works.
    client, page = log_in("sam.staff", "staff-pass-1234", ip="203.0.113.9")
    assert logged_in(client), page[:2000]


def test_nine_failures_then_the_right_password_gets_in(superuser):
    for _ in range(9):
        log_in("root", "wrong")
    client, _ = log_in("root", "root-pass-1234")
    assert logged_in(client)


def test_the_admin_and_the_api_share_the_counters(superuser):
    for _ in range(5):
        assert Api().post("/api/login/", {"username": "root", "password": "wrong"}).status_code == 401
    for _ in range(5):
        log_in("root", "wrong", ip="203.0.113.50")
    # the username has failed 10 times across both logins: both refuse it now
    response = Api().post("/api/login/", {"username": "root", "password": "root-pass-1234"})
    assert response.status_code == 429
    client, page = log_in("ROOT", "root-pass-1234", ip="203.0.113.51")  # the username's case is no way out
    assert not logged_in(client) and THROTTLED_MESSAGE in page


def test_a_member_who_is_not_staff_counts_as_a_failure(member):
    for _ in range(10):
        client, _ = log_in("ada", "member-pass-1234")
        assert not logged_in(client)
    _, page = log_in("ada", "member-pass-1234")
    assert THROTTLED_MESSAGE in page
