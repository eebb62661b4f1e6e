"""The authorisation matrix (issue 4 point 2): every endpoint x method x caller.

Columns: anonymous, a non-staff member, staff without `campaigns.send_emailburst`,
staff with it, a superuser. A body of GARBAGE shows that the caller is judged
before the body is validated: 401/403 for those refused, 422 for those let in.
Public endpoints answer the same to everyone (a bearer token is ignored there).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from campaigns.models import BurstStatus, DeliveryStatus
from members import services as member_services
from members.models import Suppression
from tests.api.conftest import Api, access_token
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "member", "staff_no_send", "staff", "superuser")
GARBAGE = {"garbage": ["not", "what", "you", "want"], "subject": 12, "username": None}
UPLOAD = object()  # a multipart upload
NEW_MEMBER = {"username": "newbie", "email": "newbie@example.test"}
BURST = {"subject": "Hi {{ member.first_name }}", "body": "Hello"}
LATER = object()  # {"send_at": <an hour from now>}
LOGIN = {"username": "sam.staff", "password": "staff-pass-1234"}
TEST_SEND = {"emails": ["tester@example.test"]}
NEW_LIST = {"name": "Volunteers"}
NO_MEMBERS = {"members": []}
NEW_SUPPRESSION = {"email": "gone@example.test"}
NEW_SEGMENT = {
    "name": "Verified",
    "rules": {"match": "all", "conditions": [{"field": "is_verified", "op": "is", "value": True}]},
}

# method, path, body,                                     anon member nosend staff  root
MATRIX = [
    # public
    ("POST", "/api/login/", LOGIN,                          200, 200, 200, 200, 200),
    ("POST", "/api/login/", GARBAGE,                        422, 422, 422, 422, 422),
    ("POST", "/api/token/refresh/", {"refresh": "{refresh}"}, 200, 200, 200, 200, 200),
    ("POST", "/api/token/verify/", {"token": "{access}"},   200, 200, 200, 200, 200),
    ("GET", "/api/health/", None,                           200, 200, 200, 200, 200),
    ("GET", "/api/docs", None,                              200, 200, 200, 200, 200),
    ("GET", "/api/openapi.json", None,                      200, 200, 200, 200, 200),
    # members
    ("GET", "/api/members/", None,                          401, 403, 200, 200, 200),
    ("POST", "/api/members/", NEW_MEMBER,                   401, 403, 201, 201, 201),
    ("POST", "/api/members/", GARBAGE,                      401, 403, 422, 422, 422),
    ("GET", "/api/members/{member}/", None,                 401, 403, 200, 200, 200),
    ("PUT", "/api/members/{member}/", NEW_MEMBER,           401, 403, 200, 200, 200),
    ("PUT", "/api/members/{member}/", GARBAGE,              401, 403, 422, 422, 422),
    ("PATCH", "/api/members/{member}/", {"first_name": "A"}, 401, 403, 200, 200, 200),
    ("PATCH", "/api/members/{member}/", GARBAGE,            401, 403, 422, 422, 422),
    ("DELETE", "/api/members/{member}/", None,              401, 403, 204, 204, 204),
    # staff
    ("GET", "/api/staff/", None,                            401, 403, 200, 200, 200),
    ("GET", "/api/staff/{colleague}/", None,                401, 403, 200, 200, 200),
    ("PUT", "/api/staff/{colleague}/", NEW_MEMBER,          401, 403, 403, 403, 200),  # email: superusers only
    ("PUT", "/api/staff/{colleague}/", GARBAGE,             401, 403, 422, 422, 422),
    ("PATCH", "/api/staff/{colleague}/", {"first_name": "A"}, 401, 403, 200, 200, 200),
    ("PATCH", "/api/staff/{colleague}/", {"is_staff": False}, 401, 403, 403, 403, 200),
    ("DELETE", "/api/staff/{colleague}/", None,             401, 403, 403, 403, 204),  # superusers only
    # non-staff
    ("GET", "/api/non-staff/", None,                        401, 403, 200, 200, 200),
    ("POST", "/api/non-staff/", NEW_MEMBER,                 401, 403, 201, 201, 201),
    ("POST", "/api/non-staff/", GARBAGE,                    401, 403, 422, 422, 422),
    ("GET", "/api/non-staff/{member}/", None,               401, 403, 200, 200, 200),
    ("PUT", "/api/non-staff/{member}/", NEW_MEMBER,         401, 403, 200, 200, 200),
    ("PATCH", "/api/non-staff/{member}/", {"last_name": "B"}, 401, 403, 200, 200, 200),
    ("PATCH", "/api/non-staff/{member}/", GARBAGE,          401, 403, 422, 422, 422),
    ("DELETE", "/api/non-staff/{member}/", None,            401, 403, 204, 204, 204),
    # superusers: only a superuser may change one
    ("PATCH", "/api/staff/{root}/", {"first_name": "R"},    401, 403, 403, 403, 200),
    ("DELETE", "/api/members/{root_two}/", None,            401, 403, 403, 403, 204),
    # email bursts
    ("GET", "/api/email-burst/", None,                      401, 403, 200, 200, 200),
    ("POST", "/api/email-burst/", BURST,                    401, 403, 201, 201, 201),
    ("POST", "/api/email-burst/", GARBAGE,                  401, 403, 422, 422, 422),
    ("GET", "/api/email-burst/{draft}/", None,              401, 403, 200, 200, 200),
    ("PUT", "/api/email-burst/{draft}/", BURST,             401, 403, 200, 200, 200),
    ("PUT", "/api/email-burst/{draft}/", GARBAGE,           401, 403, 422, 422, 422),
    ("PATCH", "/api/email-burst/{draft}/", {"subject": "S"}, 401, 403, 200, 200, 200),
    ("PATCH", "/api/email-burst/{draft}/", GARBAGE,         401, 403, 422, 422, 422),
    ("DELETE", "/api/email-burst/{draft}/", None,           401, 403, 204, 204, 204),
    ("POST", "/api/email-burst/{draft}/send/", None,        401, 403, 403, 202, 202),
    ("POST", "/api/email-burst/{draft}/send/", GARBAGE,     401, 403, 403, 202, 202),
    ("POST", "/api/email-burst/{draft}/schedule/", LATER,   401, 403, 403, 202, 202),
    ("POST", "/api/email-burst/{draft}/schedule/", GARBAGE, 401, 403, 403, 422, 422),
    ("POST", "/api/email-burst/{sending}/pause/", None,     401, 403, 403, 202, 202),
    ("POST", "/api/email-burst/{paused}/resume/", None,     401, 403, 403, 202, 202),
    ("POST", "/api/email-burst/{sending}/cancel/", None,    401, 403, 403, 202, 202),
    ("POST", "/api/email-burst/{sent}/retry/", None,        401, 403, 403, 202, 202),
    ("POST", "/api/email-burst/{sent}/retry/", GARBAGE,     401, 403, 403, 202, 202),
    ("POST", "/api/email-burst/{sent}/retry/", {"statuses": "x"}, 401, 403, 403, 422, 422),
    ("GET", "/api/email-burst/{sent}/stats/", None,         401, 403, 200, 200, 200),
    ("GET", "/api/email-burst/{sent}/deliveries/", None,    401, 403, 200, 200, 200),
    ("POST", "/api/email-burst/{draft}/attachments/", UPLOAD, 401, 403, 201, 201, 201),
    ("POST", "/api/email-burst/{draft}/attachments/", GARBAGE, 401, 403, 422, 422, 422),
    # before sending: any staff member who may view a burst may test it
    ("POST", "/api/email-burst/{draft}/test/", TEST_SEND, 401, 403, 202, 202, 202),
    ("POST", "/api/email-burst/{draft}/test/", GARBAGE, 401, 403, 422, 422, 422),
    ("GET", "/api/email-burst/{draft}/preview/", None,      401, 403, 200, 200, 200),
    ("GET", "/api/email-burst/{draft}/preflight/", None,    401, 403, 200, 200, 200),
    # mailing lists and segments: staff only
    ("GET", "/api/lists/", None,                            401, 403, 200, 200, 200),
    ("POST", "/api/lists/", NEW_LIST,                       401, 403, 201, 201, 201),
    ("POST", "/api/lists/", GARBAGE,                        401, 403, 422, 422, 422),
    ("GET", "/api/lists/{list}/", None,                     401, 403, 200, 200, 200),
    ("PUT", "/api/lists/{list}/", NEW_LIST,                 401, 403, 200, 200, 200),
    ("PUT", "/api/lists/{list}/", GARBAGE,                  401, 403, 422, 422, 422),
    ("PATCH", "/api/lists/{list}/", {"description": "D"},   401, 403, 200, 200, 200),
    ("DELETE", "/api/lists/{list}/", None,                  401, 403, 204, 204, 204),
    ("GET", "/api/lists/{list}/members/", None,             401, 403, 200, 200, 200),
    ("POST", "/api/lists/{list}/members/", NO_MEMBERS,      401, 403, 200, 200, 200),
    ("POST", "/api/lists/{list}/members/", GARBAGE,         401, 403, 422, 422, 422),
    ("POST", "/api/lists/{list}/members/remove/", NO_MEMBERS, 401, 403, 200, 200, 200),
    ("POST", "/api/lists/{list}/members/remove/", GARBAGE,  401, 403, 422, 422, 422),
    ("GET", "/api/segments/", None,                         401, 403, 200, 200, 200),
    ("POST", "/api/segments/", NEW_SEGMENT,                 401, 403, 201, 201, 201),
    ("POST", "/api/segments/", GARBAGE,                     401, 403, 422, 422, 422),
    ("GET", "/api/segments/{segment}/", None,               401, 403, 200, 200, 200),
    ("PUT", "/api/segments/{segment}/", NEW_SEGMENT,        401, 403, 200, 200, 200),
    ("PUT", "/api/segments/{segment}/", GARBAGE,            401, 403, 422, 422, 422),
    ("PATCH", "/api/segments/{segment}/", {"description": "D"}, 401, 403, 200, 200, 200),
    ("DELETE", "/api/segments/{segment}/", None,            401, 403, 204, 204, 204),
    ("GET", "/api/segments/{segment}/members/", None,       401, 403, 200, 200, 200),
    # bounces and complaints: staff only
    ("GET", "/api/events/", None,                           401, 403, 200, 200, 200),
    ("GET", "/api/suppressions/", None,                     401, 403, 200, 200, 200),
    ("POST", "/api/suppressions/", NEW_SUPPRESSION,         401, 403, 201, 201, 201),
    ("POST", "/api/suppressions/", GARBAGE,                 401, 403, 422, 422, 422),
    ("DELETE", "/api/suppressions/{suppression}/", None,    401, 403, 204, 204, 204),
    # system
    ("GET", "/api/test/emailer/", None,                     401, 403, 200, 200, 200),
]  # fmt: skip


@pytest.fixture
def world(db, member, staff_user, staff_without_send, superuser):
    from members.models import Member

    colleague = MemberFactory(username="colleague", email="colleague@example.test", is_staff=True)
    root_two = Member.objects.create_superuser(username="root2", email="root2@example.test", password="x")
    people = [MemberFactory() for _ in range(2)]
    sent = BurstFactory(status=BurstStatus.SENT, recipients=people, deliveries_ready=True)
    for person, status in zip(people, [DeliveryStatus.FAILED, DeliveryStatus.SENT], strict=True):
        DeliveryFactory(burst=sent, member=person, status=status)
    sending = BurstFactory(status=BurstStatus.SENDING, recipients=people, deliveries_ready=True)
    paused = BurstFactory(status=BurstStatus.PAUSED, recipients=people, deliveries_ready=True)
    return {
        "member": member.pk,
        "colleague": colleague.pk,
        "root": superuser.pk,
        "root_two": root_two.pk,
        "draft": BurstFactory(recipients=[member]).pk,
        "sending": sending.pk,
        "paused": paused.pk,
        "sent": sent.pk,
        "list": member_services.mailing_list_create(name="Board").pk,
        "suppression": Suppression.objects.create(email="bounced@example.test", reason="hard_bounce").pk,
        "segment": member_services.segment_create(
            name="Everyone", rules={"match": "all", "conditions": []}
        ).pk,
        "users": {
            "anonymous": None,
            "member": member,
            "staff_no_send": staff_without_send,
            "staff": staff_user,
            "superuser": superuser,
        },
    }


def _row_id(row) -> str:
    method, path, body = row[:3]
    kind = "garbage" if body is GARBAGE else "upload" if body is UPLOAD else "body" if body else "no body"
    return f"{method} {path} ({kind})"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("row", MATRIX, ids=[_row_id(r) for r in MATRIX])
def test_authorisation_matrix(row, role, world, request):
    method, path, body, *expected_by_role = row
    expected = dict(zip(ROLES, expected_by_role, strict=True))[role]
    user = world["users"][role]
    api = Api(access_token(user) if user else None)
    if "/test/" in path:  # the SMTP check and test sends
        request.getfixturevalue("smtp_settings")
    path = path.format(**{k: v for k, v in world.items() if k != "users"})

    if body is UPLOAD:
        response = api.client.post(
            path, {"file": SimpleUploadedFile("a.txt", b"hello", "text/plain")}, headers=api.headers()
        )
    elif body is GARBAGE and path.endswith("/attachments/"):
        response = api.client.post(path, {"garbage": "x"}, headers=api.headers())  # multipart without a file
    else:
        if body is LATER:
            body = {"send_at": (timezone.now() + timedelta(hours=1)).isoformat()}
        elif isinstance(body, dict) and "{refresh}" in body.values():
            body = {"refresh": _login(api)["refresh"]}
        elif isinstance(body, dict) and "{access}" in body.values():
            body = {"token": _login(api)["access"]}
        response = api.request(method, path, body)
    assert response.status_code == expected, (role, method, path, response.content[:300])


def _login(api: Api) -> dict:
    return Api().post("/api/login/", LOGIN).json()


def test_the_matrix_covers_every_operation(as_staff):
    """A new endpoint without a row in the matrix fails here."""
    schema = as_staff.get("/api/openapi.json").json()
    operations = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    covered = {(method, _template(path)) for method, path, *_ in MATRIX}
    assert operations - covered == set()


def _template(path: str) -> str:
    import re

    return re.sub(r"\{[a-z_]+\}", "{id}", path)
