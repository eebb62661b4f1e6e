import pytest
from django.utils import timezone

from members import services
from members.models import Member


@pytest.fixture
def crowd(db):
    Member.objects.bulk_create(
        Member(username=f"c{i}", email=f"c{i}@example.test", is_verified=i % 2 == 0, password="!")
        for i in range(6)
    )
    return Member.objects.filter(username__startswith="c")


def test_it_marks_members_verified_and_counts_only_changes(crowd):
    assert services.members_mark_verified(members=crowd) == 3
    assert not crowd.filter(is_verified=False).exists()
    assert services.members_mark_verified(members=crowd) == 0


def test_it_unsubscribes_and_resubscribes(crowd):
    crowd.filter(username="c0").update(unsubscribed_at=timezone.now())
    assert services.members_unsubscribe(members=crowd) == 5
    assert not crowd.filter(unsubscribed_at__isnull=True).exists()
    assert services.members_resubscribe(members=crowd.filter(username__in=["c1", "c2"])) == 2
    assert crowd.filter(unsubscribed_at__isnull=True).count() == 2
