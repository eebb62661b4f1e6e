"""A real IMAP server for the tests: Debian's dovecot, run as `dovecot -F -c CONF`
with everything (config, state, logs, maildirs) under one temporary folder.

`dovecot_server` (session) starts it on a free 127.0.0.1 port; `imap_account`
gives each test a mailbox of its own (one of the users written at start). Without dovecot the tests skip with the reason, or fail
under REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import _unavailable

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {user}
default_internal_user = {user}
mail_location = maildir:{root}/mail/%u
first_valid_uid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@dataclass(frozen=True)
class ImapAccount:
    host: str
    port: int
    user: str
    password: str

    @property
    def url(self) -> str:
        return f"imap://{self.user}:{self.password}@{self.host}:{self.port}/INBOX"

    @property
    def config(self) -> dict:
        """What config/settings.py makes of `url` (settings.BOUNCE_IMAP)."""
        return {
            "host": self.host,
            "port": self.port,
            "ssl": False,
            "user": self.user,
            "password": self.password,
            "mailbox": "INBOX",
        }


@dataclass
class DovecotServer:
    """The users are written before start: dovecot notices a changed password file by
    its mtime in whole seconds, so users added during a run may not log in."""

    root: Path
    port: int
    accounts: list[ImapAccount]

    def add_user(self) -> ImapAccount:
        if not self.accounts:
            pytest.fail(f"tests/imapd.py: more than {ACCOUNTS} IMAP accounts used in one run")
        return self.accounts.pop()


ACCOUNTS = 200


def _write_accounts(passwd: Path, port: int) -> list[ImapAccount]:
    accounts = [
        ImapAccount(
            host="127.0.0.1", port=port, user=f"u{n}x{uuid.uuid4().hex[:8]}", password=uuid.uuid4().hex
        )
        for n in range(ACCOUNTS)
    ]
    passwd.write_text("".join(f"{a.user}:{{PLAIN}}{a.password}\n" for a in accounts))
    passwd.chmod(0o644)
    return accounts


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dovecot exited at start-up:\n{log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"dovecot did not listen on port {port}:\n{log.read_text() if log.exists() else ''}")


@pytest.fixture(scope="session")
def dovecot_server():
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
    if not binary:
        _unavailable("needs dovecot (apt-get install -y dovecot-imapd)")
    # As root, dovecot's processes drop to `nobody`; as anyone else they keep the user.
    account = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    root = Path(tempfile.mkdtemp(prefix="emailer-dovecot-"))
    root.chmod(0o755)  # traversable by nobody
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir(mode=0o755)
    if os.geteuid() == 0:
        os.chown(root / "mail", account.pw_uid, account.pw_gid)
    port = _free_port()
    accounts = _write_accounts(root / "passwd", port)
    conf = root / "dovecot.conf"
    conf.write_text(
        CONFIG.format(root=root, user=account.pw_name, uid=account.pw_uid, gid=account.pw_gid, port=port)
    )
    process = subprocess.Popen(
        [binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        _wait_listening(port, process, root / "dovecot.log")
        yield DovecotServer(root=root, port=port, accounts=accounts)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def imap_account(dovecot_server: DovecotServer) -> ImapAccount:
    return dovecot_server.add_user()


def dsn_message(
    recipient: str, *, message_id: str = "<not-a-token@example.org>", status: str = "5.1.1"
) -> bytes:
    """A Postfix-shaped delivery status notification (RFC 3464) for `recipient`, quoting
    the headers of the message it returns (`message_id`: ours carry a delivery token)."""
    return (
        "Return-Path: <>\r\n"
        "From: MAILER-DAEMON@relay.example.org (Mail Delivery System)\r\n"
        "To: bounces@example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Sun, 6 Dec 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{recipient}.dsn@relay.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"\r\n'
        "\r\n"
        "--BOUNDARY\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        f"I'm sorry to have to inform you that your message could not be delivered to {recipient}.\r\n"
        "\r\n"
        "--BOUNDARY\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; relay.example.org\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        "Action: failed\r\n"
        f"Status: {status}\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        "\r\n"
        "--BOUNDARY\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        "From: news@example.org\r\n"
        f"To: {recipient}\r\n"
        "Subject: Our news\r\n"
        f"Message-ID: {message_id}\r\n"
        "\r\n"
        "--BOUNDARY--\r\n"
    ).encode()
