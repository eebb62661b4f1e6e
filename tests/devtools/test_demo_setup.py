from io import StringIO

import pytest
from django.core.management import call_command

from campaigns.models import EmailBurst
from members.models import Member


def run() -> str:
    out = StringIO()
    call_command("demo_setup", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_it_creates_the_demo_superuser_once_and_prints_its_password():
    first = run()
    admin = Member.objects.get(is_superuser=True)
    password = first.split("password: ")[1].split()[0]
    assert admin.username == "admin" and admin.check_password(password)

    second = run()
    assert Member.objects.filter(is_superuser=True).count() == 1
    assert "password: " not in second and "changepassword admin" in second


@pytest.mark.django_db
def test_it_seeds_only_when_there_are_no_bursts():
    run()
    assert EmailBurst.objects.count() == 2
    assert Member.objects.filter(is_staff=True, is_superuser=False).count() == 2
    EmailBurst.objects.all().delete()
    EmailBurst.objects.create(subject="Mine", body="x")
    run()
    assert EmailBurst.objects.count() == 1
