"""The management commands README.md shows for development work as written after
`make run` (which runs with DEBUG=1 and writes no settings file): each is run here in a
shell, from the project folder, in an environment without DEBUG or SECRET_KEY, on a
database that `make run`'s first two steps (migrate, demo_setup) prepared."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
README = BASE_DIR / "README.md"
VENV_PYTHON = ".venv/bin/python"
# Interactive, or a server that runs until stopped (tests/campaigns/test_smtp_sink.py runs it).
NOT_RUN_HERE = ("changepassword", "smtp_sink")

pytestmark = pytest.mark.slow


def readme_commands() -> list[str]:
    """Every inline command of the README that runs a management command in the venv."""
    return re.findall(rf"`([^`]*{re.escape(VENV_PYTHON)} manage\.py [^`]*)`", README.read_text())


def shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # The interpreter running the tests stands for the venv's, wherever the venv is.
    command = command.replace(VENV_PYTHON, sys.executable)
    return subprocess.run(
        ["sh", "-c", command], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=240
    )


@pytest.fixture(scope="module")
def after_make_run(tmp_path_factory) -> dict[str, str]:
    """The environment of a developer's shell after `make run` (none of its settings),
    and a database `make run` has migrated and seeded."""
    folder = tmp_path_factory.mktemp("after-make-run")
    env = {
        k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL"}
    }
    env.update(DATABASE_URL=f"sqlite:////{folder}/db.sqlite3", HUEY_SQLITE_PATH=str(folder / "huey.sqlite3"))
    for step in ("migrate --noinput", "demo_setup"):  # as the Makefile runs them
        result = shell(f"DEBUG=${{DEBUG:-1}} {VENV_PYTHON} manage.py {step}", env)
        assert result.returncode == 0, result.stdout + result.stderr
    return env


def test_the_readme_shows_development_commands_with_the_settings_they_need():
    commands = readme_commands()
    assert any("create_sample_data" in c for c in commands)
    assert any("changepassword admin" in c for c in commands)
    for command in commands:
        assert command.startswith(f"DEBUG=1 {VENV_PYTHON} manage.py "), command


def test_each_readme_command_runs_as_written_after_make_run(after_make_run):
    ran = 0
    for command in readme_commands():
        if any(name in command for name in NOT_RUN_HERE) or "<command>" in command:
            continue
        result = shell(command, after_make_run)
        assert result.returncode == 0, (command, result.stdout + result.stderr)
        ran += 1
    assert ran >= 1


@pytest.mark.parametrize(
    "name", ["seed_database", "show_seeded_data", "recount_bursts", "create_sample_data"]
)
def test_the_listed_management_commands_run_the_way_the_readme_says(after_make_run, name):
    assert f"`{name}" in README.read_text()
    result = shell(f"DEBUG=1 {VENV_PYTHON} manage.py {name}", after_make_run)
    assert result.returncode == 0, result.stdout + result.stderr


def test_demo_setup_tells_how_to_run_other_commands(after_make_run):
    result = shell(f"DEBUG=1 {VENV_PYTHON} manage.py demo_setup", after_make_run)
    assert f"DEBUG=1 {VENV_PYTHON} manage.py changepassword admin" in result.stdout
