"""`make bench`: how fast Emailer sends, against Postfix's smtp-sink.

Prints msgs/s for: raw smtplib with prebuilt messages on one connection (the
baseline, median of 3), Django's send_mail with a connection per message (the
naive app), and a real burst through the whole system (huey consumer with 2
process workers, statuses written), plus the worker's peak RSS at two burst
sizes. Uses PostgreSQL and Redis when they answer on 127.0.0.1, else SQLite
and huey on SQLite. Not part of `make test`: figures, not assertions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
VAR = BASE_DIR / "var" / "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_sink() -> tuple[subprocess.Popen, int]:
    if not os.path.exists(SMTP_SINK):
        sys.exit("Postfix's smtp-sink is missing: apt-get install -y postfix (the daemon is never started)")
    port = free_port()
    proc = subprocess.Popen([SMTP_SINK, "-u", "nobody", f"127.0.0.1:{port}", "1024"], start_new_session=True)
    for _ in range(50):
        if reachable(port):
            return proc, port
        time.sleep(0.05)
    sys.exit("smtp-sink did not start")


def configure_env(port: int, workdir: Path) -> str:
    env = os.environ
    env["DEBUG"] = "0"
    env.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    env["EMAIL_URL"] = f"smtp://127.0.0.1:{port}"
    env["HUEY_NAME"] = "emailer-bench"
    # The worker runs as the Procfile ships it: no worker settings of the bench's own.
    for name in ("HUEY_WORKER_TYPE", "HUEY_WORKERS", "EMAIL_CHUNK_SIZE"):
        env.pop(name, None)
    # The bench's own set-up (a million members created and wiped) is maintenance work
    # beyond DATABASE_TIMEOUT's statement limit; what it measures (the worker, the import)
    # runs in processes of their own with the shipped default (`shipped_env`).
    env["DATABASE_TIMEOUT"] = "0"
    if reachable(5432) and reachable(6379) and not env.get("BENCH_EMBEDDED"):
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "DROP DATABASE IF EXISTS emailer_bench"],
            check=True,
        )
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "CREATE DATABASE emailer_bench"], check=True
        )
        env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/emailer_bench"
        env["REDIS_URL"] = "redis://127.0.0.1:6379/9"
        return "PostgreSQL + Redis"
    for leftover in workdir.glob("*.sqlite3*"):
        leftover.unlink()
    env["DATABASE_URL"] = f"sqlite:///{workdir}/bench.sqlite3"
    env["HUEY_SQLITE_PATH"] = str(workdir / "huey.sqlite3")
    env.pop("REDIS_URL", None)
    return "SQLite + huey on SQLite"


def shipped_env() -> dict[str, str]:
    """The environment of a measured process: the bench's, with the shipped DATABASE_TIMEOUT."""
    return {key: value for key, value in os.environ.items() if key != "DATABASE_TIMEOUT"}


def prebuilt_message(i: int) -> bytes:
    body = "\r\n".join(
        f"Line {n} of a newsletter paragraph, written to be about seventy chars." for n in range(26)
    )
    return (
        f"From: News <news@example.org>\r\nTo: member{i}@example.org\r\nSubject: Hello member {i}\r\n"
        f"Message-ID: <raw{i}@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def bench_raw(port: int, n: int) -> float:
    messages = [prebuilt_message(i) for i in range(n)]
    conn = smtplib.SMTP("127.0.0.1", port)
    conn.ehlo()
    started = time.perf_counter()
    for i, message in enumerate(messages):
        conn.sendmail("news@example.org", [f"member{i}@example.org"], message)
    elapsed = time.perf_counter() - started
    conn.quit()
    return n / elapsed


def bench_naive(n: int) -> float:
    from django.core.mail import send_mail

    started = time.perf_counter()
    for i in range(n):
        send_mail(
            f"Hello member {i}", "A short newsletter.\n" * 26, "news@example.org", [f"member{i}@example.org"]
        )
    return n / (time.perf_counter() - started)


def wipe() -> None:
    """Empty the tables the bench fills, without per-row signals."""
    from django.db import connection

    from campaigns.models import DailyOutcome, Delivery, EmailAttachment, EmailBurst
    from members.models import Member

    # The pages' superuser goes too (it would be one more member of the next burst);
    # through the ORM, for the rows that refer to it (tokens, admin log).
    Member.objects.filter(username="bench-admin").delete()
    tables = [
        Delivery._meta.db_table,
        EmailAttachment._meta.db_table,
        EmailBurst.recipients.through._meta.db_table,
        EmailBurst._meta.db_table,
        DailyOutcome._meta.db_table,
    ]
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DELETE FROM {table}")
        cursor.execute(f"DELETE FROM {Member._meta.db_table}")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def make_members(n: int) -> None:
    from django.db import connection

    from members.models import Member

    wipe()
    if connection.vendor == "postgresql":
        # A million rows in seconds; the ORM's bulk_create would take half a minute.
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {Member._meta.db_table} (password, is_superuser, username, first_name,"
                " middle_name, last_name, email, is_staff, is_active, is_verified, date_joined)"
                " SELECT '!', false, 'bench' || i, 'First' || i, '', 'Last' || i,"
                " 'bench' || i || '@example.org', false, true, false, now()"
                " FROM generate_series(0, %s - 1) AS i",
                [n],
            )
            # Now, not during the timed part: autovacuum would start on a million new rows.
            cursor.execute(f"VACUUM ANALYZE {Member._meta.db_table}")
        return
    batch = []
    for i in range(n):
        batch.append(
            Member(
                username=f"bench{i}",
                email=f"bench{i}@example.org",
                first_name=f"First{i}",
                last_name=f"Last{i}",
                password="!",
            )
        )
        if len(batch) == 5000:
            Member.objects.bulk_create(batch)
            batch = []
    Member.objects.bulk_create(batch)


def rss_kib(pid: int) -> int:
    """Peak resident set (VmHWM) of a process and its children, the largest one."""
    peaks = []
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]))
        except OSError:
            pass
    return max(peaks or [0])


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_by_command() -> dict[str, float]:
    """CPU seconds used so far by every process, summed by command name."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def bench_burst(n: int) -> tuple[float, int, int]:
    from django.db import connection

    from campaigns import selectors, services
    from campaigns.models import BurstStatus, EmailBurst

    make_members(n)
    burst = services.burst_create(
        subject="News for {{ member.first_name }}",
        body="Dear {{ member.first_name }} {{ member.last_name }},\n\n"
        + "Our news of the month, in a paragraph.\n" * 20,
        html_body="<p>Dear {{ member.first_name }} {{ member.last_name }},</p>"
        + "<p>Our news of the month.</p>" * 20,
        all_members=True,
    )
    connection.close()
    consumer = subprocess.Popen(
        # The Procfile's worker command, as shipped.
        [sys.executable, "manage.py", "run_huey"],
        cwd=BASE_DIR,
        env=shipped_env(),
        stdout=open(VAR / "consumer.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(2.0)  # consumer start-up is not sending time
        started = time.perf_counter()
        cpu_before = cpu_by_command()
        services.burst_send(burst_id=burst.pk)
        peak = 0
        while not EmailBurst.objects.filter(pk=burst.pk, status=BurstStatus.SENT).exists():
            peak = max(peak, rss_kib(consumer.pid))
            time.sleep(0.05)
            if time.perf_counter() - started > 1800:
                sys.exit("burst did not finish in 30 minutes")
        elapsed = time.perf_counter() - started
        cpu_after = cpu_by_command()
        used = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()}
        top = sorted(used.items(), key=lambda kv: -kv[1])[:6]
        print("    CPU seconds during the burst: " + ", ".join(f"{k} {v:.1f}" for k, v in top if v > 0.05))
        stats = selectors.burst_stats(burst_id=burst.pk)
        assert stats.sent_count == n, stats
        return n / elapsed, max(peak, rss_kib(consumer.pid)), burst.pk
    finally:
        os.killpg(consumer.pid, signal.SIGINT)
        consumer.wait(timeout=60)


def bench_creation(n: int) -> tuple[float, float]:
    """Seconds to create the deliveries of an all-members burst of n members (no
    consumer running), and how many rows a second."""
    from huey.contrib.djhuey import HUEY

    from campaigns import services
    from campaigns.models import BurstStatus, EmailBurst

    make_members(n)
    burst = services.burst_create(subject="Hello", body="Hello {{ member.first_name }}", all_members=True)
    EmailBurst.objects.filter(pk=burst.pk).update(status=BurstStatus.SENDING)
    started = time.perf_counter()
    created = services.burst_create_deliveries(burst_id=burst.pk)
    elapsed = time.perf_counter() - started
    HUEY.flush()  # the chunk tasks it queued: nobody sends this one
    assert created == n, created
    return elapsed, n / elapsed


def bench_audience_creation(n: int) -> tuple[float, float, int]:
    """Seconds to resolve and create the deliveries of a burst addressed to a list of
    the n members and a segment, minus a list of 1,000 (no consumer running)."""
    from huey.contrib.djhuey import HUEY

    from campaigns import services
    from campaigns.models import BurstStatus, EmailBurst
    from members import services as member_services
    from members.models import Member

    everyone = member_services.mailing_list_create(name="bench: everyone")
    member_services.list_members_add(list_id=everyone.pk, members=Member.objects.all())
    first = Member.objects.order_by("pk").values_list("pk", flat=True)[999]
    left_out = member_services.mailing_list_create(name="bench: left out")
    member_services.list_members_add(list_id=left_out.pk, members=Member.objects.filter(pk__lte=first))
    verified = member_services.segment_create(
        name="bench: verified",
        rules={"match": "all", "conditions": [{"field": "is_verified", "op": "is", "value": True}]},
    )
    burst = services.burst_create(
        subject="Hello",
        body="Hello {{ member.first_name }}",
        lists=[everyone.pk],
        segments=[verified.pk],
        exclude_lists=[left_out.pk],
    )
    EmailBurst.objects.filter(pk=burst.pk).update(status=BurstStatus.SENDING)
    started = time.perf_counter()
    created = services.burst_create_deliveries(burst_id=burst.pk)
    elapsed = time.perf_counter() - started
    HUEY.flush()
    return elapsed, created / elapsed, created


def write_import_file(path: Path, n: int) -> None:
    """A member list as other tools export it: email, names, a birth date, verified."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("Email Address,First Name,Last Name,Birthday,Verified\r\n")
        for start in range(0, n, 10_000):
            out.write(
                "".join(
                    f"import{i}@example.org,First{i},Last{i},{1940 + i % 60}-{1 + i % 12:02d}-{1 + i % 28:02d},"
                    f"{'yes' if i % 3 else 'no'}\r\n"
                    for i in range(start, min(start + 10_000, n))
                )
            )


def run_import_members(path: Path) -> tuple[float, int, str]:
    """`manage.py import_members FILE` in a process of its own: seconds, its own peak RSS
    (KiB, from wait4's resource usage) and the summary line it printed."""
    started = time.perf_counter()
    with open(VAR / "import.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "import_members", str(path)],
            cwd=BASE_DIR,
            env=shipped_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    lines = (VAR / "import.log").read_text().strip().splitlines()
    if proc.returncode != 0:
        sys.exit(f"import_members exited {proc.returncode}: " + " / ".join(lines[-5:]))
    return elapsed, usage.ru_maxrss, lines[-1]


def bench_import(n: int) -> list[tuple[str, float, int, str]]:
    """Import a CSV of n new members, then the same file again (every row unchanged)."""
    from django.db import connection

    from members.models import ListMembership, MailingList, Segment

    path = VAR / f"import-{n}.csv"
    if not path.exists():
        write_import_file(path, n)
    ListMembership.objects.all().delete()
    MailingList.objects.all().delete()
    Segment.objects.all().delete()
    wipe()
    connection.close()  # the import's process writes the members; this one only waits
    runs = []
    for label in ("new members", "re-import, all unchanged"):
        elapsed, rss, summary = run_import_members(path)
        runs.append((label, elapsed, rss, summary))
    return runs


def print_import(n: int) -> None:
    for label, elapsed, rss, summary in bench_import(n):
        print(
            f"  import_members of {n:,} rows ({label}): {elapsed:.1f} s, {n / elapsed:,.0f} rows/s, "
            f"peak RSS {rss / 1024:.0f} MiB (goal: < 180 s, < 200 MB) [{summary}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--big", type=int, default=200_000, help="the second, larger burst (0: skip)")
    parser.add_argument("--raw", type=int, default=20_000)
    parser.add_argument("--naive", type=int, default=2_000)
    parser.add_argument(
        "--create", type=int, default=1_000_000, help="deliveries to create, PostgreSQL only (0: skip)"
    )
    parser.add_argument(
        "--import-rows",
        type=int,
        default=1_000_000,
        help="members to import from CSV, PostgreSQL only (0: skip)",
    )
    parser.add_argument("--only-import", action="store_true", help="run the member import bench only")
    args = parser.parse_args()

    VAR.mkdir(parents=True, exist_ok=True)
    if args.only_import:
        main_import_only(args.import_rows)
        return
    sink, port = start_sink()
    try:
        backend = configure_env(port, VAR)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        sys.path.insert(0, str(BASE_DIR))
        import django

        django.setup()
        import warnings

        from django.core.management import call_command
        from django.db import connection

        from bench.pages import print_side_by_side, time_pages

        warnings.filterwarnings("ignore", message="No directory at")  # whitenoise, before collectstatic

        call_command("migrate", verbosity=0)
        print(f"Emailer bench on {backend}, Postfix smtp-sink on 127.0.0.1:{port}, {os.cpu_count()} cores")
        print("  The worker runs as the Procfile ships it: `python manage.py run_huey`, default settings.")
        raw = statistics.median(bench_raw(port, args.raw) for _ in range(3))
        print(f"  raw smtplib, prebuilt, 1 connection (median of 3): {raw:8.0f} msgs/s")
        naive = bench_naive(args.naive)
        print(f"  Django send_mail, a connection per message:        {naive:8.0f} msgs/s")
        rate, rss, burst_id = bench_burst(args.recipients)
        print(f"  Emailer burst of {args.recipients:,} (text+HTML, personalised): {rate:8.0f} msgs/s")
        print(
            f"    = {rate / raw:.2f} x raw smtplib (target >= 1.5), {rate / naive:.2f} x naive (target >= 3)"
        )
        print(f"    worker peak RSS at {args.recipients:,} recipients: {rss / 1024:.0f} MiB")
        small_pages = time_pages(burst_id)
        if args.big:
            big_rate, big_rss, big_id = bench_burst(args.big)
            print(
                f"  Emailer burst of {args.big:,}: {big_rate:8.0f} msgs/s = {big_rate / rate:.2f} x the "
                f"{args.recipients:,} burst (target >= 0.85); worker peak RSS {big_rss / 1024:.0f} MiB = "
                f"{big_rss / rss:.2f} x (target <= 1.2)"
            )
            print_side_by_side(args.recipients, small_pages, args.big, time_pages(big_id))
        if args.create and connection.vendor == "postgresql":
            seconds, per_second = bench_creation(args.create)
            print(
                f"  Deliveries of a {args.create:,}-member burst created in {seconds:.1f} s "
                f"({per_second:,.0f} rows/s; target <= 20 s)"
            )
            seconds, per_second, created = bench_audience_creation(args.create)
            print(
                f"  Audience of a list of {args.create:,} + a segment - a list of 1,000 resolved and "
                f"{created:,} deliveries created in {seconds:.1f} s ({per_second:,.0f} rows/s; target <= 20 s)"
            )
        if args.import_rows and connection.vendor == "postgresql":
            print_import(args.import_rows)
    finally:
        os.killpg(sink.pid, signal.SIGTERM)
        sink.wait()


def main_import_only(n: int) -> None:
    """`python -m bench --only-import`: the member import bench alone (no SMTP sink)."""
    backend = configure_env(0, VAR)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"Emailer bench (member import only) on {backend}, {os.cpu_count()} cores")
    print_import(n)


if __name__ == "__main__":
    main()
