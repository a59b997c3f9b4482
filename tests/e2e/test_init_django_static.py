"""A Django project with `django.contrib.staticfiles`: `railguard init` collects its static files in the build
(`pip install ... && python manage.py collectstatic`) into the artifact and has the edge serve them under
STATIC_URL, so a deploy with DEBUG off serves its CSS. The app is the Django project of test_init_apps.py with
staticfiles turned on and the settings lines init prints applied. Real build against the package index, real
processes, the real Caddy edge."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .test_init_apps import _init, stop  # noqa: F401  (stop: the fixture)


@pytest.mark.timeout(600)
def test_django_static_files_are_collected_in_the_build_and_served_by_the_edge(stop: Path) -> None:  # noqa: F811
    ws = _init(stop, "djangoproj")  # init wrote the spec before the project used staticfiles: write it again
    settings = ws.root / "mysite" / "settings.py"
    text = settings.read_text().replace('"django.contrib.contenttypes",',
                                        '"django.contrib.contenttypes", "django.contrib.staticfiles",')
    settings.write_text(text.replace('DEBUG = False', 'DEBUG = False\nSTATIC_URL = "static/"'))
    css = ws.root / "board" / "static" / "board" / "app.css"
    css.parent.mkdir(parents=True)
    css.write_text("body { color: rebeccapurple; }\n")
    code, found = ws.rg_json("init", "--force")
    assert code == 0, found
    changes = "\n".join(found["code_changes"])
    assert 'STATIC_ROOT = BASE_DIR / "staticfiles"' in changes, changes
    assert 'os.environ.get("DJANGO_SECRET_KEY", "")' in changes, changes  # the build has no secrets
    # The lines init asks for, applied as a user would; the edge ports as the first init set them.
    text = settings.read_text().replace('os.environ["DJANGO_SECRET_KEY"]', 'os.environ.get("DJANGO_SECRET_KEY", "")')
    settings.write_text(text.replace('STATIC_URL = "static/"', 'STATIC_URL = "static/"\n'
                                                                'STATIC_ROOT = BASE_DIR / "staticfiles"'))
    spec = (ws.root / "railguard.toml").read_text()
    assert '"&&", "python", "manage.py", "collectstatic", "--noinput"]' in spec, spec
    assert 'static = [{ path = "/static", folder = "staticfiles"' in spec, spec
    ports = iter([ws.port, ws.fixed_port])
    (ws.root / "railguard.toml").write_text("\n".join(
        f"edge_port = {next(ports)}" if line.startswith("edge_port = ") else line for line in spec.splitlines()))
    done = subprocess.run([sys.executable, "-m", "railguard", "secret", "set", "DJANGO_SECRET_KEY", "--env",
                           "staging"], input="k" * 50, text=True, capture_output=True, cwd=ws.root, check=False)
    assert done.returncode == 0, done.stderr
    code, result = ws.deploy()
    assert code == 0, result
    served = httpx.get(f"http://127.0.0.1:{ws.port}/static/board/app.css", timeout=10, trust_env=False)
    assert served.status_code == 200 and "rebeccapurple" in served.text, (served.status_code, served.text[:200])
    assert "max-age=3600" in served.headers.get("cache-control", ""), served.headers
    assert ws.get("/healthz").text == "ok"
