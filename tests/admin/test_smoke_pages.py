import pytest

from campaigns.models import BurstStatus, DeliveryStatus
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db


def test_pages_render(root_client):
    members = MemberFactory.create_bulk(30)
    draft = BurstFactory(
        subject="Draft {{ member.first_name }}",
        recipients=members[:5],
        html_body="<p>Hi {{ member.first_name }}</p>",
    )
    sent = BurstFactory(subject="Sent one", status=BurstStatus.SENT, recipients=members)
    DeliveryFactory.create_for(
        sent,
        members,
        status=lambda i: [DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.NOT_FOUND][i % 3],
    )
    for url in [
        "/admin/",
        "/admin/members/member/",
        f"/admin/members/member/{members[0].pk}/change/",
        "/admin/members/member/import/",
        "/admin/campaigns/emailburst/",
        "/admin/campaigns/emailburst/add/",
        f"/admin/campaigns/emailburst/{draft.pk}/change/",
        f"/admin/campaigns/emailburst/{sent.pk}/change/",
        f"/admin/campaigns/emailburst/{sent.pk}/change/?dstatus=failed",
        f"/admin/campaigns/emailburst/{draft.pk}/preview/",
        f"/admin/campaigns/emailburst/{draft.pk}/preflight/",
        f"/admin/campaigns/emailburst/{draft.pk}/send/",
        f"/admin/campaigns/emailburst/{draft.pk}/schedule/",
        f"/admin/campaigns/emailburst/{draft.pk}/send-test/",
        f"/admin/campaigns/emailburst/{sent.pk}/retry/",
        f"/admin/campaigns/emailburst/{sent.pk}/progress/",
        f"/admin/campaigns/emailburst/{sent.pk}/report/csv/",
        f"/admin/campaigns/emailburst/{sent.pk}/report/xlsx/",
        "/admin/campaigns/delivery/",
        f"/admin/campaigns/delivery/?burst__id__exact={sent.pk}&status__exact=failed",
        f"/admin/campaigns/delivery/?member__id__exact={members[0].pk}",
    ]:
        response = root_client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.content[:3000])
