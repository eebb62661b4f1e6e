import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "prod-" + "k3y-Zq9!x" * 8,
    "ALLOWED_HOSTS": "emailer.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://emailer.example.org",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_PRELOAD": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "EMAIL_URL": "smtp+tls://mailer:pw@smtp.example.org:587",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SECURE_", "EMAIL_URL"))}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_passes_the_deploy_check_with_production_settings(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DATABASE_URL=f"sqlite:////{tmp_path}/prod.sqlite3",
        HUEY_SQLITE_PATH=str(tmp_path / "h"),
        **PRODUCTION,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_passes_the_plain_system_check_in_development(tmp_path):
    result = manage(
        "check",
        DEBUG="1",
        DATABASE_URL=f"sqlite:////{tmp_path}/dev.sqlite3",
        HUEY_SQLITE_PATH=str(tmp_path / "h"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_has_no_missing_migrations(tmp_path):
    result = manage(
        "makemigrations",
        "--check",
        "--dry-run",
        DEBUG="1",
        DATABASE_URL=f"sqlite:////{tmp_path}/dev.sqlite3",
        HUEY_SQLITE_PATH=str(tmp_path / "h"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
