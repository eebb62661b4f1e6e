"""Page timings for `make bench`: the admin and API pages about bursts, deliveries
and members, timed in-process through the whole Django stack (middleware, auth,
templates), with their query counts. Run at two data sizes, side by side."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

REPEAT = 7


@dataclass
class PageTiming:
    name: str
    ms: float
    queries: int
    status: int


def _time(client, name: str, url: str, **headers) -> PageTiming:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url, **headers)  # warm: templates, caches
    times = []
    status = 0
    connection.queries_log.clear()  # each request resets it: the capture must start at 0
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, **headers)
    count = len(queries)  # now: the log it reads is reset by the next request
    status = response.status_code
    for _ in range(REPEAT):
        started = time.perf_counter()
        client.get(url, **headers)
        times.append((time.perf_counter() - started) * 1000)
    return PageTiming(name, statistics.median(times), count, status)


def _last_page_by_cursor(client, url: str, headers: dict) -> str:
    """Follow `next` links with pages of 500 to the last one; returns its URL with
    pages of 100, like the first page it is compared with."""
    page_url, last = url, url
    while page_url:
        last = page_url
        page_url = client.get(page_url, **headers).json()["next"]
        if page_url:
            page_url = page_url.removeprefix("http://testserver")
    return last.replace("limit=500", "limit=100")


def time_pages(burst_id: int) -> list[PageTiming]:
    from django.conf import settings
    from django.core import signals
    from django.db import close_old_connections
    from django.test import Client

    # One connection for the whole timing, as a web process keeps it (and so that
    # the query counter sees every query of a page).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]

    from members.models import Member

    admin_user = Member.objects.filter(username="bench-admin").first()
    if admin_user is None:
        admin_user = Member.objects.create_superuser(
            "bench-admin", "bench-admin@example.org", "bench-pass-123"
        )
    client = Client()
    client.force_login(admin_user)
    api = Client()
    token = api.post(
        "/api/login/",
        {"username": "bench-admin", "password": "bench-pass-123"},
        content_type="application/json",
    ).json()["access"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    deliveries = f"/api/email-burst/{burst_id}/deliveries/?limit=100"
    members = "/api/members/?limit=100"
    last_deliveries = _last_page_by_cursor(api, f"/api/email-burst/{burst_id}/deliveries/?limit=500", auth)
    last_members = _last_page_by_cursor(api, "/api/members/?limit=500", auth)
    return [
        _time(api, "API stats", f"/api/email-burst/{burst_id}/stats/", **auth),
        _time(api, "API bursts list", "/api/email-burst/", **auth),
        _time(api, "API deliveries, first page", deliveries, **auth),
        _time(api, "API deliveries, last page (cursor)", last_deliveries, **auth),
        _time(api, "API members, first page", members, **auth),
        _time(api, "API members, last page (cursor)", last_members, **auth),
        _time(client, "admin dashboard", "/admin/"),
        _time(client, "admin bursts list", "/admin/campaigns/emailburst/"),
        _time(client, "admin burst report", f"/admin/campaigns/emailburst/{burst_id}/change/"),
        _time(client, "admin burst progress (live)", f"/admin/campaigns/emailburst/{burst_id}/progress/"),
        _time(client, "admin deliveries list", f"/admin/campaigns/delivery/?burst__id__exact={burst_id}"),
        _time(client, "admin members list", "/admin/members/member/"),
    ]


def print_side_by_side(small_n: int, small: list[PageTiming], big_n: int, big: list[PageTiming]) -> None:
    print(
        f"  Pages at {small_n:,} and {big_n:,} recipients/members (median of {REPEAT}; target: x <= 2.0, same queries)"
    )
    print(f"    {'page':38} {small_n:>9,} {big_n:>9,}      x  queries")
    for a, b in zip(small, big, strict=True):
        ratio = b.ms / a.ms if a.ms else 0
        flag = "" if ratio <= 2 and a.queries == b.queries and a.status == b.status == 200 else "  <--"
        print(
            f"    {a.name:38} {a.ms:7.1f}ms {b.ms:7.1f}ms {ratio:6.2f}  {a.queries:>3} / {b.queries:<3}"
            f"{'' if a.status == 200 else f' HTTP {a.status}'}{flag}"
        )
