"""Invalid input is a 422 naming the field, an oversized body a 413, on every
operation (issue 4 point 6)."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.api.conftest import Api
from tests.factories import BurstFactory

pytestmark = pytest.mark.django_db


def operations(api: Api) -> list[tuple[str, str, dict]]:
    schema = api.get("/api/openapi.json").json()
    return [(method.upper(), path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


@pytest.fixture
def ids(member):
    return {"id": BurstFactory(recipients=[member]).pk}


def test_every_error_answer_is_declared(as_staff):
    for method, path, op in operations(as_staff):
        declared = set(op["responses"])
        assert "413" in declared, (method, path)
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in declared, (method, path)
        if op.get("security"):
            assert {"401", "403"} <= declared, (method, path)
        if "{id}" in path:
            assert "404" in declared, (method, path)


def test_every_protected_operation_documents_its_auth(as_staff):
    for method, path, op in operations(as_staff):
        public = path in {"/api/login/", "/api/token/refresh/", "/api/token/verify/", "/api/health/"}
        assert bool(op.get("security")) is not public, (method, path)
        assert op.get("description"), (method, path)


def test_malformed_json_is_422_on_every_body_operation(as_staff, ids):
    for method, path, op in operations(as_staff):
        content = op.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        for raw in (b'{"subject": ', b"\xff\xfe not utf-8", b"[1, 2]", b'"a string"', b"nul", b"null", b"12"):
            response = as_staff.request(method, path.format(**ids), raw=raw)
            assert response.status_code == 422, (method, path, raw, response.content)
            detail = response.json()["detail"]
            assert detail and all({"loc", "field", "msg", "type"} <= set(item) for item in detail)


def test_malformed_json_names_the_body(as_staff):
    response = as_staff.request("POST", "/api/members/", raw=b'{"username": "x",')
    item = response.json()["detail"][0]
    assert item["field"] == "body" and "Malformed JSON" in item["msg"]


def test_a_body_over_the_limit_is_413_on_every_operation(as_staff, ids, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    settings.ATTACHMENT_MAX_SIZE = 1024
    big = b'{"x": "' + b"x" * 10_000 + b'"}'
    checked = 0
    for method, path, _op in operations(as_staff):
        response = as_staff.request(method, path.format(**ids), raw=big)
        assert response.status_code == 413, (method, path, response.content[:200])
        assert response.json() == {"detail": "Request body too large."}
        checked += 1
    assert checked >= 35


def test_a_body_over_the_limit_is_413_on_public_operations(anon, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    big = '{"username": "' + "x" * 5000 + '", "password": "y"}'
    for path in ("/api/login/", "/api/token/refresh/", "/api/token/verify/"):
        assert anon.request("POST", path, raw=big).status_code == 413, path
    client = Client()
    response = client.generic("GET", "/api/health/", data=big, content_type="application/json")
    assert response.status_code == 413


def test_a_large_body_from_an_anonymous_caller_is_401_without_reading_it(anon, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = anon.request("POST", "/api/members/", raw=b"x" * 10_000)
    assert response.status_code == 401


def test_too_many_form_fields_is_413(as_staff, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    burst = BurstFactory()
    response = as_staff.client.post(
        f"/api/email-burst/{burst.pk}/attachments/",
        {f"f{i}": "x" for i in range(10)},
        headers=as_staff.headers(),
    )
    assert response.status_code == 413


def test_broken_multipart_is_422(as_staff):
    burst = BurstFactory()
    response = as_staff.client.generic(
        "POST",
        f"/api/email-burst/{burst.pk}/attachments/",
        data=b"--xyz\r\nnot a part",
        content_type="multipart/form-data",  # no boundary
        headers=as_staff.headers(),
    )
    assert response.status_code == 422


@pytest.mark.parametrize("path", ["/api/members/abc/", "/api/email-burst/-1/", "/api/email-burst/1.5/stats/"])
def test_non_numeric_ids_are_404(as_staff, path):
    assert as_staff.get(path).status_code == 404


@pytest.mark.parametrize("big", [2**63, 2**64, 10**30])
def test_huge_ids_are_404(as_staff, big):
    for path in (f"/api/members/{big}/", f"/api/email-burst/{big}/", f"/api/email-burst/{big}/stats/"):
        assert as_staff.get(path).status_code == 404, path
    assert as_staff.post(f"/api/email-burst/{big}/send/").status_code == 404
    assert as_staff.delete(f"/api/members/{big}/").status_code == 404


def test_huge_recipient_ids_are_422(as_staff):
    response = as_staff.post("/api/email-burst/", {"subject": "s", "body": "b", "recipients": [2**63]})
    assert response.status_code == 422


def test_unsupported_method_is_405(as_staff):
    response = as_staff.request("PUT", "/api/members/", {})
    assert response.status_code == 405
    assert "GET" in response["Allow"]


@pytest.mark.parametrize("debug", [False, True])
def test_unknown_paths_and_missing_slashes_are_json_404s(as_staff, settings, debug):
    """Not Django's HTML page, nor APPEND_SLASH's redirect (which drops a POST body,
    and is a 500 under DEBUG)."""
    settings.DEBUG = debug
    for method, path in [
        ("GET", "/api/members"),
        ("POST", "/api/members"),
        ("GET", "/api/nothing/here/"),
        ("DELETE", "/api/members/%0A%C3%8C/"),
        ("GET", "/api/email-burst/1%0A/stats/"),
    ]:
        response = as_staff.request(method, path, {"username": "x", "email": "x@example.test"})
        assert response.status_code == 404, (method, path)
        assert response.json()["detail"].startswith("Not Found")


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"], ids=["NUL", "lone surrogate"])
def test_strings_the_database_cannot_store_are_422(as_staff, member, bad):
    """PostgreSQL refuses NUL in text, and UTF-8 has no lone surrogates: a 422, not a 500."""
    burst = BurstFactory()
    cases = [
        ("POST", "/api/login/", {"username": bad, "password": "x"}),
        ("POST", "/api/login/", {"username": "ada", "password": bad}),
        ("POST", "/api/token/refresh/", {"refresh": bad}),
        ("POST", "/api/token/verify/", {"token": bad}),
        ("POST", "/api/members/", {"username": "zz", "email": f"x{bad}@example.test"}),
        ("POST", "/api/members/", {"username": "zz", "email": f"x@exa{bad}mple.test"}),
        ("POST", "/api/members/", {"username": f"z{bad}", "email": "zz@example.test"}),
        ("POST", "/api/members/", {"username": "zz", "email": "zz@example.test", "password": bad}),
        ("PATCH", f"/api/members/{member.pk}/", {"last_name": bad}),
        ("POST", "/api/email-burst/", {"subject": "s", "body": "b", "sender": f"x{bad}@example.test"}),
        ("POST", "/api/email-burst/", {"subject": "s", "body": f"b{bad}"}),
        ("PATCH", f"/api/email-burst/{burst.pk}/", {"html_body": bad}),
        ("PATCH", f"/api/email-burst/{burst.pk}/", {"from_name": bad}),
    ]
    for method, path, body in cases:
        response = as_staff.request(method, path, body)
        assert response.status_code == 422, (method, path, body, response.content)
    if "\x00" in bad:  # a lone surrogate cannot even be percent-encoded
        assert as_staff.get("/api/members/", {"search": bad}).status_code == 422
