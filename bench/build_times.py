"""Build time and disk of a Django-like app: uv + shared dependency layer against pip + a fresh venv.

Why it exists: issue 10 measured 9–19 s per build and 32–77 MB per artifact with the old builds
(a fresh virtualenv with pip, `pip install -r requirements.txt`, for every source change). The
targets are a template-only rebuild in ≤ 2 s and ≤ 5 MB of disk per extra artifact when the
dependencies did not change. This script builds the same app three times each way:

1. first build (requirements: django, gunicorn, dj-database-url);
2. rebuild after a template-only change;
3. rebuild after adding one dependency (six).

"new" is Railguard's builder (`providers.local.artifacts.ensure`, in process, in a temp state folder;
uv's own cache is whatever the machine has, as for a user). "old" replays what the builder did
before: `venv` with pip into the artifact folder, then `python -m pip install -r requirements.txt`.
Both use the machine's pip configuration (the new one through its translation for uv). Disk is
`du` of the state folder's artifacts (hard links counted once) after each step.

"verify ms" is the check before every start (`artifacts.verify`: the artifact and its layer against their
manifests), cold (a daemon's first check: every file hashed) / warm (stat only).

Usage: .venv/bin/python bench/build_times.py [--json] [--new-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

from railguard.providers.local import artifacts, immutable
from railguard.sources.snapshot import snapshot

REQUIREMENTS = "django\ngunicorn\ndj-database-url\n"
FILES = {
    "manage.py": "import os, sys\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site_app.settings')\n"
                 "from django.core.management import execute_from_command_line\nexecute_from_command_line(sys.argv)\n",
    "site_app/__init__.py": "",
    "site_app/settings.py": "SECRET_KEY = 'bench'\nINSTALLED_APPS = ['django.contrib.contenttypes', 'shop']\n"
                            "ROOT_URLCONF = 'site_app.urls'\nTEMPLATES = [{'BACKEND': "
                            "'django.template.backends.django.DjangoTemplates', 'APP_DIRS': True}]\n",
    "site_app/urls.py": "from django.urls import path\nfrom shop import views\nurlpatterns = [path('', views.index)]\n",
    "site_app/wsgi.py": "from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n",
    "shop/__init__.py": "",
    "shop/views.py": "from django.shortcuts import render\n\ndef index(request):\n"
                     "    return render(request, 'shop/index.html', {})\n",
    "shop/templates/shop/index.html": "<h1>Shop</h1>\n",
}


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) * 1024


def write_app(root: Path) -> Path:
    src = root / "app"
    for name, text in FILES.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    (src / "requirements.txt").write_text(REQUIREMENTS)
    return src


def build_new(state: Path, src: Path) -> float:
    start = time.perf_counter()
    artifacts.ensure(state / "artifacts", src, snapshot(src).digest, None, {})
    return time.perf_counter() - start


def verify_ms(state: Path, src: Path) -> tuple[float, float]:
    """The check before a start: cold (a daemon's first, every file hashed) and warm (stat only)."""
    art = artifacts.find(state / "artifacts", snapshot(src).digest, None)
    assert art is not None
    immutable._cache.clear()
    start = time.perf_counter()
    artifacts.verify(art)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    artifacts.verify(art)
    return cold * 1000, (time.perf_counter() - start) * 1000


def build_old(state: Path, src: Path, n: int) -> float:
    start = time.perf_counter()
    folder = state / "artifacts" / f"old{n}"
    shutil.copytree(src, folder / "src")
    venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(folder / "venv")
    subprocess.run([str(folder / "venv" / "bin" / "python"), "-m", "pip", "install", "--no-input", "-q",
                    "-r", "requirements.txt"], cwd=folder / "src", check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return time.perf_counter() - start


def scenario(kind: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix=f"rg-build-{kind}-") as tmp:
        root = Path(tmp)
        src = write_app(root)
        state = root / "state"
        template = src / "shop/templates/shop/index.html"
        steps = [("first build", None),
                 ("template-only change", lambda: template.write_text("<h1>Shop!</h1>\n")),
                 ("one dependency added", lambda: (src / "requirements.txt").write_text(REQUIREMENTS + "six\n"))]
        before = 0
        for n, (name, change) in enumerate(steps):
            if change is not None:
                change()
            seconds = build_new(state, src) if kind == "new" else build_old(state, src, n)
            total = du(state / "artifacts")
            row: dict[str, object] = {"builder": kind, "step": name, "seconds": round(seconds, 2),
                                      "disk_total_mb": round(total / 2**20, 1),
                                      "disk_added_mb": round((total - before) / 2**20, 1)}
            if kind == "new":
                cold, warm = verify_ms(state, src)
                row["verify_cold_ms"], row["verify_warm_ms"] = round(cold), round(warm)
            rows.append(row)
            before = total
        immutable.remove_tree(state)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--new-only", action="store_true", help="skip the (slow) pip + fresh venv builds")
    args = parser.parse_args()
    rows = scenario("new") + ([] if args.new_only else scenario("old"))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}, cpus {os.cpu_count()}")
    print(f"{'builder':8} {'step':24} {'seconds':>8} {'disk added MB':>14} {'disk total MB':>14} {'verify ms':>14}")
    for row in rows:
        check = f"{row['verify_cold_ms']}/{row['verify_warm_ms']}" if "verify_cold_ms" in row else "-"
        print(f"{row['builder']:8} {row['step']:24} {row['seconds']:>8} {row['disk_added_mb']:>14} "
              f"{row['disk_total_mb']:>14} {check:>14}")


if __name__ == "__main__":
    main()
