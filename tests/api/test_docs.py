"""/api/docs renders offline: every asset it references is served locally (issue 4 point 7)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_docs_reference_only_local_static_files():
    client = Client()
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in a for a in assets)
    for asset in assets:
        assert not re.match(r"^(https?:)?//", asset), f"external asset {asset}"
        assert asset.startswith("/static/"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        b"".join(served.streaming_content) if served.streaming else served.content
    assert "cdn" not in html.lower()


def test_openapi_schema_is_public_and_describes_bearer_auth():
    schema = Client().get("/api/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert all(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    assert schema["paths"]["/api/email-burst/{id}/send/"]["post"]["security"] == [{"SenderAuth": []}]
