"""A web process and a worker write to the embedded SQLite database at once."""

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]

WRITER = """
import sys, django
django.setup()
from django.db import transaction
from members.models import Member
tag = sys.argv[1]
for i in range(150):
    with transaction.atomic():
        m = Member.objects.create(username=f"{tag}-{i}", email=f"{tag}-{i}@example.test")
        Member.objects.filter(pk=m.pk).update(first_name="x" * (i % 7))
        Member.objects.filter(username__startswith=tag).count()
print("done", tag)
"""


def test_two_processes_write_at_once_without_database_is_locked(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DEBUG="1",
        DATABASE_URL=f"sqlite:////{tmp_path}/shared.sqlite3",
        HUEY_SQLITE_PATH=str(tmp_path / "huey.sqlite3"),
    )
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert migrate.returncode == 0, migrate.stderr

    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, tag],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("web", "worker")
    ]
    results = [w.communicate(timeout=180) for w in writers]
    for writer, (_out, err) in zip(writers, results, strict=True):
        assert writer.returncode == 0, err
        assert "database is locked" not in err

    count = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from members.models import Member; print(Member.objects.count())",
        ],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert count.stdout.strip() == "300"
