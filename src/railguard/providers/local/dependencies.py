"""What an artifact installs, decided from the app's files and its ``build``, and the key of that set.

Pure: reads the dependency files, runs nothing. :func:`plan` turns ``requirements.txt``, a pyproject's
``[project]``, a ``uv.lock`` or a ``pip install ...`` build into a :class:`Dependencies`; :func:`key` digests
what decides the installed packages (those files and their includes, the interpreter, the platform, uv's index
settings) and never the app's code, so artifacts that differ only in code share a dependency layer. Called by
:mod:`railguard.providers.local.artifacts` and :mod:`railguard.providers.local.layers`.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import stat
import sys
import sysconfig
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from railguard.providers.local.buildrun import ArtifactError

# uv settings that change nothing about what is installed; every other UV_* (indexes, strategy) is in the key.
_NOT_KEY = {"UV_NO_PROGRESS", "UV_CACHE_DIR", "UV_PYTHON_DOWNLOADS", "UV_LINK_MODE", "UV_CONCURRENT_DOWNLOADS"}
_PIP = re.compile(r"^(?:.*/)?pip3?(?:\.\d+)?$")
_PYTHON = re.compile(r"^(?:.*/)?python3?(?:\.\d+)?$")
_DROP_FLAGS = {"--no-input", "-q", "--quiet", "-qq", "-U", "--upgrade", "--no-cache-dir", "-v", "--verbose",
               "--disable-pip-version-check", "--no-warn-script-location", "--user", "--compile", "--no-compile",
               "--progress-bar=off", "--root-user-action=ignore"}
_VALUE_FLAGS = {"-i": "--index-url", "--index-url": "--index-url", "--extra-index-url": "--extra-index-url",
                "-f": "--find-links", "--find-links": "--find-links"}


@dataclass(frozen=True)
class Dependencies:
    """What an artifact installs, and how.

    ``requirements``/``constraints``: files for the layer (relative to the source); ``packages``:
    requirement strings for the layer; ``project``: the app's own pyproject dependencies go to the layer
    and the app itself is installed into the artifact (``uv pip install --no-deps .``); ``lock``: a
    ``uv.lock`` exported to exact pins; ``rest``: the spec's build when it is more than a pip install.
    """

    requirements: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    index_args: tuple[str, ...] = ()
    project: bool = False
    lock: bool = False
    rest: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def layered(self) -> bool:
        return bool(self.requirements or self.packages or self.project or self.lock)


def _declares_project(pyproject: Path) -> bool:
    try:
        return isinstance(tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project"), dict)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):  # nested past the parser
        return False


def _pip_args(build: list[str]) -> list[str] | None:
    """The arguments of ``pip install ...`` / ``python -m pip install ...``, or None for any other build."""
    if len(build) >= 4 and _PYTHON.match(build[0]) and build[1:4] == ["-m", "pip", "install"]:
        return build[4:]
    if len(build) >= 2 and _PIP.match(build[0]) and build[1] == "install":
        return build[2:]
    return None


AND = "&&"  # in a build: the next command runs after this one succeeded (argv, no shell)


def commands(build: list[str]) -> list[list[str]]:
    """The commands of a build chained with ``"&&"`` elements (one command when there is none)."""
    found: list[list[str]] = [[]]
    for arg in build:
        if arg == AND:
            found.append([])
        else:
            found[-1].append(arg)
    if any(not command for command in found):
        raise ArtifactError(f"build: {' '.join(build)!r} has an empty command around '&&'; write "
                            '["python", "-m", "pip", "install", "-r", "requirements.txt", "&&", "python", '
                            '"manage.py", "collectstatic", "--noinput"]')
    return found


def plan(src: Path, build: list[str] | None) -> Dependencies:
    """Decide what to install from the files in ``src`` and the spec's ``build``; runs nothing.

    A build's first command may be a pip install (carried out by uv in the shared layer) chained with
    ``"&&"`` to commands that run after it in the artifact (Django's ``collectstatic``)."""
    chain = commands(build) if build else []
    args = _pip_args(chain[0]) if chain else None
    after = [arg for command in chain[1:] for arg in [AND, *command]][1:] or None
    if build and args is None:
        found = _detect(src)
        return Dependencies(found.requirements, (), (), (), found.project, found.lock, list(build), found.notes)
    if args is None:
        return _detect(src)
    reqs: list[str] = []
    cons: list[str] = []
    packages: list[str] = []
    index: list[str] = []
    project = False
    i = 0
    while i < len(args):
        arg = args[i]
        value = args[i + 1] if i + 1 < len(args) else None
        if arg in ("-r", "--requirement", "-c", "--constraint") and value is not None:
            (reqs if arg in ("-r", "--requirement") else cons).append(value)
            i += 2
            continue
        if arg in _VALUE_FLAGS and value is not None:
            index += [_VALUE_FLAGS[arg], value]
            i += 2
            continue
        if arg.startswith("--requirement=") or arg.startswith("-r") and len(arg) > 2:
            reqs.append(arg.split("=", 1)[1] if "=" in arg else arg[2:])
        elif arg in _DROP_FLAGS:
            pass
        elif arg.startswith("-"):
            raise ArtifactError(
                f"build: Railguard installs dependencies with uv and does not know pip's option {arg!r}; "
                f"use plain `pip install -r requirements.txt` / `pip install .` (or a requirements file), "
                f"or a build command that is not pip")
        elif arg in (".", "./") or arg.startswith("./") and (src / arg).is_dir():
            project = project or arg in (".", "./")
            if arg not in (".", "./"):
                packages.append(arg)
        else:
            packages.append(arg)
        i += 1
    return Dependencies(tuple(reqs), tuple(cons), tuple(packages), tuple(index), project, False, after,
                        ["the build's pip install is carried out by uv in a shared dependency layer"])


def _detect(src: Path) -> Dependencies:
    pyproject = src / "pyproject.toml"
    has_project = pyproject.is_file() and _declares_project(pyproject)
    if has_project and (src / "uv.lock").is_file():
        return Dependencies(project=True, lock=True, notes=["uv.lock: installing its exact pins"])
    reqs = ("requirements.txt",) if (src / "requirements.txt").is_file() else ()
    notes = ["requirements.txt"] if reqs else []
    if has_project:
        notes.append("pyproject.toml [project]")
    return Dependencies(requirements=reqs, project=has_project, notes=notes)


MARKERS_MAX_BYTES = 1 << 20


def check_markers(src: Path, deps: Dependencies) -> None:
    """Refuse a requirements file none of whose requirements applies to the artifacts' Python.

    ``poetry export`` writes ``; python_version >= "3.12"`` on every line of a project that says
    ``python = "^3.12"``: on Railguard's Python 3.11 uv installs nothing and says only "Checked 23 packages",
    and the release then fails with "'alembic' is not installed", which requirements.txt plainly lists."""
    from packaging.requirements import InvalidRequirement, Requirement

    root = src.resolve()
    for name in deps.requirements:
        path = (src / name).resolve()
        # The build's `-r NAME` is the spec's (the agent's): only a regular file inside the source is read, and a
        # bounded part of it (not /dev/zero, a FIFO or a file of the daemon's; uv reads the real one later).
        try:
            if not path.is_relative_to(root) or not stat.S_ISREG(path.stat().st_mode):
                continue
            with path.open("rb") as f:
                lines = f.read(MARKERS_MAX_BYTES).decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        found, skipped = 0, []
        for raw in lines:
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith(("#", "-")):
                continue
            try:
                req = Requirement(line)
            except InvalidRequirement:
                return  # a URL, a path, a form we do not read: uv decides
            found += 1
            if req.marker is not None and not req.marker.evaluate():
                skipped.append(str(req.marker))
        if found and len(skipped) == found:
            python = ".".join(map(str, sys.version_info[:3]))
            raise ArtifactError(
                f"{name}: none of its {found} requirements applies to Python {python}, the interpreter the "
                f"artifacts are made from (their markers say {min(set(skipped), key=len)}), so nothing would be "
                "installed. Run Railguard on a Python the markers accept, or export the requirements for this "
                "one (e.g. `python = \"^3.11\"` in pyproject.toml, then `poetry export` again)")


def python_excluded(requires: object) -> str | None:
    """The running Python's version when a ``requires-python`` excludes it (the artifacts are made from it)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if not isinstance(requires, str):
        return None
    try:
        accepted = SpecifierSet(requires)
    except InvalidSpecifier:
        return None  # uv reports it in its own words
    python = ".".join(map(str, sys.version_info[:3]))
    return None if accepted.contains(python, prereleases=True) else python


def check_python(src: Path, deps: Dependencies) -> None:
    """Refuse, before anything is installed, a project whose ``requires-python`` excludes the artifacts' Python.

    The full-stack FastAPI template says ``>=3.14``: on Python 3.11 uv installed every dependency into the
    layer first, then refused the app itself with a resolver message about ``app==0.1.0``."""
    if not deps.project:
        return
    try:
        project = tomllib.loads((src / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):  # nested past the parser
        return
    requires = project.get("requires-python") if isinstance(project, dict) else None
    if (python := python_excluded(requires)) is not None:
        raise ArtifactError(
            f"pyproject.toml: requires-python = {requires!r} excludes Python {python}, the interpreter the artifacts "
            f"are made from (the one Railguard runs on), so the project cannot be installed. Run Railguard from a "
            f"Python the project accepts (install it in a virtualenv made from that Python, then `railguard daemon "
            f"stop` so the next command starts the daemon from it), or widen requires-python if the code runs on "
            f"{python}")


def _local_refs(text: str) -> bool:
    """Whether a requirements file installs something from the app's own tree (then the source is the key)."""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#") and (line.startswith((".", "/", "-e", "--editable", "file:"))
                                                 or " @ file:" in line):
            return True
    return False


def _includes(src: Path, rel: str, seen: set[Path]) -> list[tuple[str, str]]:
    """``rel`` and every file it includes with -r/-c, as (path, text), staying inside ``src``."""
    path = (src / rel).resolve()
    if path in seen or not path.is_relative_to(src.resolve()):
        return []
    seen.add(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"build: cannot read the dependency file {rel!r}: {exc}") from exc
    out = [(str(path.relative_to(src.resolve())), text)]
    for raw in text.splitlines():
        parts = raw.strip().split()
        if len(parts) >= 2 and parts[0] in ("-r", "--requirement", "-c", "--constraint"):
            out += _includes(path.parent, parts[1], seen) if path.parent.is_relative_to(src.resolve()) else []
    return out


def key(src: Path, deps: Dependencies, source_digest: str, uv_env: dict[str, str]) -> str:
    """The layer's identity: dependency files, interpreter, platform and index settings, never app code.

    ``uv_env`` is the environment uv runs with; only its ``UV_*`` settings count (the app's own variables,
    a new VERSION for example, must not make a new layer).
    """
    files: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for rel in (*deps.requirements, *deps.constraints):
        files += _includes(src, rel, seen)
    pinned_by_source = any(_local_refs(text) for _, text in files) or any(
        p.startswith((".", "/")) for p in deps.packages)
    project: object = None
    if deps.project:
        data = tomllib.loads((src / "pyproject.toml").read_text(encoding="utf-8"))
        proj = data.get("project", {})
        project = {"dependencies": proj.get("dependencies"), "dynamic": proj.get("dynamic"),
                   "requires-python": proj.get("requires-python")}
        if "dependencies" in (proj.get("dynamic") or []):
            pinned_by_source = True  # only building the project tells what it needs
    if deps.lock:
        files.append(("uv.lock", (src / "uv.lock").read_text(encoding="utf-8")))
    # uv runs in the source folder, so the app's own uv settings (a uv.toml, a pyproject's [tool.uv]: indexes,
    # find-links, sources with local paths) change what gets installed: they are part of the key, and as they can
    # name files of the source, a layer they shape is this source's alone (never shared with another environment
    # whose requirements merely look the same).
    uv_config: object = None
    if (src / "uv.toml").is_file():
        uv_config = (src / "uv.toml").read_text(encoding="utf-8", errors="replace")
    if (src / "pyproject.toml").is_file():
        try:
            tool = tomllib.loads((src / "pyproject.toml").read_text(encoding="utf-8")).get("tool", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):  # nested past the parser
            tool = {}
        if isinstance(tool, dict) and tool.get("uv"):
            uv_config = [uv_config, tool["uv"]]
    if uv_config is not None:
        pinned_by_source = True
    settings = sorted((k, v) for k, v in uv_env.items() if k.startswith("UV_") and k not in _NOT_KEY)
    material = {
        "v": 1, "files": sorted(files), "packages": deps.packages, "index_args": deps.index_args,
        "project": project, "python": sys.version, "implementation": platform.python_implementation(),
        "platform": sysconfig.get_platform(), "libc": platform.libc_ver(), "uv_env": settings,
        "source": source_digest if pinned_by_source else None,
    } | ({"uv_config": uv_config} if uv_config is not None else {})  # only then: other layers keep their keys
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:24]
