"""The curl walk-through of README.md, run as written through the test client.

The shell block is interpreted, not copied: every `curl` call of the README is
parsed (method, path, headers, body) and sent through Django's test client, with
the shell variables it sets; so the README cannot drift from what the API does.
Sending goes through huey (immediate mode) to a real SMTP server. The README says
the walk-through can be run again as it is: the test runs it twice on one database.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

README = Path(__file__).resolve().parents[2] / "README.md"


def shell_block() -> list[str]:
    text = README.read_text()
    block = re.search(r"### Walk-through with curl.*?```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no ```sh walk-through block"
    # join continuation lines
    return [line.strip() for line in block.group(1).replace("\\\n", " ").splitlines()]


class Shell:
    """Just enough of sh for the walk-through: assignments, curl, field, a polling loop."""

    def __init__(self, client: Client, preset: dict[str, str], now: int) -> None:
        self.client = client
        self.vars: dict[str, str] = {}
        self.preset = preset
        self.now = now  # what `date +%s` answers
        self.responses: list[Any] = []

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.vars[m.group(1)], text)

    def curl(self, command: str):
        args = shlex.split(self.expand(command))
        assert args[0] == "curl", args
        method, url, headers, data = "GET", None, {}, None
        i = 1
        while i < len(args):
            arg = args[i]
            if arg == "-s":
                pass
            elif arg == "-w":  # output format only
                i += 1
            elif arg == "-X":
                i += 1
                method = args[i]
            elif arg == "-H":
                i += 1
                name, value = args[i].split(":", 1)
                headers[name.strip()] = value.strip()
            elif arg == "-d":
                i += 1
                data = args[i]
            else:
                assert url is None, f"unexpected curl argument {arg!r}"
                url = arg
            i += 1
        path = url.removeprefix("http://127.0.0.1:8000")
        content_type = headers.pop("Content-Type", "application/octet-stream")
        if data is not None:
            json.loads(data)  # the README sends valid JSON
        response = self.client.generic(
            method, path, data=data or "", content_type=content_type, headers=headers
        )
        assert 200 <= response.status_code < 300, (method, path, response.status_code, response.content)
        self.responses.append((method, path, response.status_code, response.json()))
        return response.json()

    @staticmethod
    def field(value: Any, expression: str) -> str:
        for key in re.findall(r'\["(\w+)"\]', expression):
            value = value[key]
        return str(value)

    def run(self, line: str) -> None:
        if not line or line.startswith("#") or line.startswith("field()"):
            return
        if m := re.fullmatch(r"(\w+)=\$\((curl .*) \| field '(.*)'\)", line):
            name, command, expression = m.groups()
            self.vars[name] = self.field(self.curl(command), expression)
        elif m := re.fullmatch(r"(\w+)=\$\(date \+%s\)", line):
            self.vars[m.group(1)] = str(self.now)
        elif m := re.fullmatch(r"(\w+)=(.*)", line):
            name, value = m.groups()
            self.vars[name] = self.preset.get(name) or shlex.split(self.expand(value))[0]
        elif m := re.fullmatch(
            r'while \[ "\$\((curl .*) \| field \'(.*)\'\)" != (\S+) \]; do sleep \d+; done', line
        ):
            command, expression, expected = m.groups()
            for _ in range(30):
                if self.field(self.curl(command), expression) == expected:
                    break
            else:
                pytest.fail(f"{command} never gave {expected}")
        elif line.startswith("curl "):
            self.curl(line)
        else:
            pytest.fail(f"the walk-through test does not understand: {line}")


@pytest.mark.django_db(transaction=True)
def test_the_readme_walkthrough_works_and_can_be_run_again(smtp_settings, immediate_huey):
    from members.models import Member

    Member.objects.create_superuser(username="admin", email="admin@localhost", password="demo-pass-1234")
    started = int(time.time())
    expected = []
    for run, now in enumerate((started, started + 60), start=1):
        shell = Shell(Client(), preset={"PASSWORD": "demo-pass-1234"}, now=now)
        for line in shell_block():
            shell.run(line)

        assert {"ACCESS", "GRACE", "ALAN", "BURST"} <= set(shell.vars)
        steps = [(method, path) for method, path, *_ in shell.responses]
        assert steps[0] == ("POST", "/api/login/")
        assert ("POST", f"/api/email-burst/{shell.vars['BURST']}/send/") in steps
        stats = [body for method, path, _, body in shell.responses if path.endswith("/stats/")][-1]
        assert stats["status"] == "sent" and stats["sent_count"] == 2 and stats["success_rate"] == 100.0
        addresses = {f"grace.hopper.{now}@example.test", f"alan.turing.{now}@example.test"}
        deliveries = shell.responses[-1][3]
        assert {d["email"] for d in deliveries["items"]} == addresses
        expected += sorted(addresses)
        received = sorted(to for message in smtp_settings.messages for to in message.rcpt_tos)
        assert received == sorted(expected), f"run {run}"
    assert Member.objects.filter(first_name__in=["Grace", "Alan"]).count() == 4
    subjects = sorted(message.message["Subject"] for message in smtp_settings.messages)
    assert subjects == ["Hello Alan", "Hello Alan", "Hello Grace", "Hello Grace"]
