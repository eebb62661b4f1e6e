"""The import refuses per row what the API refuses, with the same words (issue 15
point 6): a name with a line break."""

from __future__ import annotations

import io

import pytest

from members.importing import members_import
from tests.api.conftest import Api, access_token

pytestmark = pytest.mark.django_db


def test_a_name_with_a_line_break_is_refused_by_both_with_the_same_message(staff_user):
    api = Api(access_token(staff_user)).post(
        "/api/members/", {"username": "ann", "email": "ann@example.test", "first_name": "Ann\nMarie"}
    )
    assert api.status_code == 422
    api_message = api.json()["detail"][0]["msg"]

    report = members_import(
        source=io.BytesIO(b'email,first_name\nann@example.test,"Ann\nMarie"\n'), filename="members.csv"
    )
    assert report.invalid == 1
    assert report.rejected[0].reason == f"first_name: {api_message}"
