"""Schema fuzzing (issue 4 point 6): schemathesis against /api/openapi.json, in-process.

Every operation gets at least 50 generated requests (valid and invalid) with a
staff token, an SMTP server up for the send and test endpoints, and existing
objects behind some of the generated ids. The default checks apply: no 5xx, every
status and body as declared, invalid input rejected, valid input accepted, where
"accepted" includes 409/413/422 for input that is well-formed but wrong (an
unknown recipient id, a past `send_at`, a duplicate email, a burst in the wrong
state).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from ninja.responses import NinjaJSONEncoder
from ninja_jwt.tokens import AccessToken
from schemathesis.config import SchemathesisConfig

from config.api import api
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "413", "422", "429"]
            },
        },
        "generation": {"max-examples": 50},
    }
)


def _raw_schema() -> dict:
    return json.loads(json.dumps(api.get_openapi_schema(), cls=NinjaJSONEncoder))


schema = schemathesis.openapi.from_dict(_raw_schema(), config=CONFIG)
schema.app = get_wsgi_application()

# Existing objects for the operation under test; filled by `world`.
EXISTING: dict[str, list[int]] = {}
# The fuzzing staff user gets a fixed id, so that its token can be made up front:
# schemathesis asks for credentials while it collects the tests.
FUZZER_ID = 990_001


def _fuzzer_token() -> str:
    token = AccessToken()
    token["user_id"] = FUZZER_ID
    token.set_exp(lifetime=timedelta(hours=6))
    return str(token)


@schema.auth()
class StaffToken:
    """Schemathesis sends the token itself, so it knows when a case goes without."""

    token = _fuzzer_token()

    def get(self, case, context):
        return self.token

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.hook
def map_path_parameters(context, path_parameters):
    """Send every other generated id to an object that exists."""
    value = (path_parameters or {}).get("id")
    if not isinstance(value, int) or value % 2:
        return path_parameters
    kind = "bursts" if "/email-burst/" in context.operation.path else "members"
    if EXISTING.get(kind):
        path_parameters["id"] = EXISTING[kind][value % len(EXISTING[kind])]
    return path_parameters


@pytest.fixture
def world(db, settings, member, superuser, smtp_settings):
    from django.contrib.auth.models import Permission

    from campaigns.models import BurstStatus, DeliveryStatus
    from members.models import Member

    fuzzer = Member.objects.create_user(
        id=FUZZER_ID, username="fuzzer", email="fuzzer@example.test", password="x", is_staff=True
    )
    fuzzer.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["campaigns", "members"])
    )

    # The WSGI handler closes the database connection after each request, which
    # would end the test's transaction; Django's test client does the same.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    settings.DEBUG = False
    people = [member, *(MemberFactory() for _ in range(3))]
    bursts = [BurstFactory(recipients=people, status=status) for status in BurstStatus.values]
    for burst in bursts:
        if burst.status != BurstStatus.DRAFT:
            DeliveryFactory.create_for(burst, people, status=DeliveryStatus.values.__getitem__, ready=False)
    EXISTING["members"] = [p.pk for p in people] + [fuzzer.pk, superuser.pk]
    EXISTING["bursts"] = [b.pk for b in bursts]
    yield
    EXISTING.clear()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@hypothesis_settings(
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_the_api_matches_its_schema(case, world):
    case.call_and_validate()
