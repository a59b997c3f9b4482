"""Which files make up the app source: ignore rules, secret names, and only regular files, read safely.

A snapshot must be well defined and must never hang or leak: everything under ``[app].source``
except what ``.gitignore`` and ``.railguardignore`` exclude (gitignore syntax, via pathspec),
Railguard's own folders and files (the state folder, the spec), and files named like secrets
(``.env``, ``*.pem``, ``id_rsa``...) unless ``.railguardignore`` lists them explicitly with ``!``, and
Railguard's own ``--json`` answers saved in the tree (``railguard plan --json > plan.json``: a file that
begins ``{"ok": ..., "diagnostics": [``), which would otherwise change the source of the next plan and
replace every service.
Only regular files are taken, judged with ``lstat`` so nothing is opened to find out: FIFOs,
sockets and devices are skipped with a note (opening a FIFO blocks), symlinks are taken only when
they lead to a regular file inside the tree that the rules would take too. The total size has a cap,
checked from the listing before any byte is read. Used by :mod:`railguard.sources.snapshot` (digest)
and the doctor (which files to scan).
"""

from __future__ import annotations

import functools
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from railguard.sources.readfile import read_regular, text_mode

# The spec is not part of the app: changing `replicas` must not look like a code change.
ALWAYS_IGNORED = ["/railguard.toml", ".git/", ".railguard/", ".venv/", "venv/", "__pycache__/", "*.pyc",
                  "node_modules/", ".mypy_cache/", ".pytest_cache/", ".ruff_cache/", ".hypothesis/"]
IGNORE_FILES = (".gitignore", ".railguardignore")
# Files that usually hold credentials: left out of a snapshot (with a note) unless `!name` in .railguardignore.
SECRET_NAMES = [".env", ".env.*", "!.env.example", "!.env.sample", "!.env.template", "!.env.dist",
                "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.ppk", "*.kdbx",
                "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", ".netrc", ".pgpass", ".htpasswd", ".pypirc",
                "credentials.json", ".aws/credentials", ".docker/config.json"]
MAX_FILES = 50_000
IGNORE_FILE_BYTES = 4 * 1024 * 1024  # of a .gitignore or .railguardignore: patterns, not data
MAX_PATTERN_CHARS = 4096  # PATH_MAX
DEFAULT_MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Rules:
    """What a listing leaves out beyond the ignore files: absolute paths (the state folder, the spec) and a cap."""

    exclude: tuple[Path, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class Listed:
    """One file of the source: its relative path, the path to read (a symlink's target) and its lstat facts."""

    rel: str
    path: str
    size: int
    signature: tuple[int, int, int, int, int]  # mtime_ns, ctime_ns, size, inode, mode


@dataclass
class Listing:
    files: list[Listed] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # left out: named like a secret, not listed with `!`
    special: list[str] = field(default_factory=list)  # left out: FIFO, socket, device (never opened)
    links: list[str] = field(default_factory=list)  # left out: symlinks leading out of the tree or nowhere
    own_output: list[str] = field(default_factory=list)  # left out: Railguard's own --json answers (plan.json)

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)


class TooManyFiles(ValueError):
    pass


class TooLarge(ValueError):
    """The listing is over the size cap; ``largest`` names the biggest files (path, bytes)."""

    def __init__(self, total: int, limit: int, largest: list[tuple[str, int]]) -> None:
        super().__init__(f"the source is {total} bytes, over the limit of {limit} bytes")
        self.total, self.limit, self.largest = total, limit, largest


def _lines(root: Path, name: str) -> list[str]:
    path = root / name
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):  # never open a FIFO named .gitignore
            return []
        data = read_regular(path, IGNORE_FILE_BYTES, same_owner=False)  # a sparse 10 GB one costs nothing to make
    except OSError:
        return []
    # A pattern is a path: one longer than any path, or with a NUL (no path has one), is no pattern; git skips
    # patterns it cannot use, and so does this (the compiler below refuses them all at once otherwise).
    lines = text_mode(data[:IGNORE_FILE_BYTES], errors="replace").splitlines()[:100_000]
    return [line for line in lines if len(line) <= MAX_PATTERN_CHARS and "\0" not in line]


@functools.lru_cache(maxsize=16)
def _compiled(lines: tuple[str, ...]) -> pathspec.PathSpec:  # type: ignore[type-arg]
    """Patterns compiled once per distinct text: status lists the source on every call, and compiling the ignore
    files' patterns was a fifth of that listing (the files are still read every time, so an edit is seen)."""
    try:
        return pathspec.PathSpec.from_lines("gitignore", lines)
    except Exception:  # the compiler (re2, re) refused the set: keep every pattern it takes alone
        return pathspec.PathSpec.from_lines("gitignore", [line for line in lines if _compiles(line)])


def _compiles(line: str) -> bool:
    try:
        pathspec.PathSpec.from_lines("gitignore", [line])
    except Exception:  # any refusal of the compiler means the same: not a usable pattern
        return False
    return True


def ignore_spec(root: Path) -> pathspec.PathSpec:  # type: ignore[type-arg]
    lines = list(ALWAYS_IGNORED)
    for name in IGNORE_FILES:
        lines += _lines(root, name)
    return _compiled(tuple(lines))


def _allowed_secrets(root: Path) -> pathspec.PathSpec:  # type: ignore[type-arg]
    """The secret-named files someone listed explicitly (``!.env.production`` in .railguardignore)."""
    wanted = [line.strip()[1:] for line in _lines(root, ".railguardignore") if line.strip().startswith("!")]
    return _compiled(tuple(wanted))


SECRETS = pathspec.PathSpec.from_lines("gitignore", SECRET_NAMES)
# A cheap first look at the file name (most files are not secrets); a hit is confirmed by SECRETS.
_SECRET_NAME = re.compile(r"\.env(\..*)?|.*\.(pem|key|p12|pfx|jks|keystore|ppk|kdbx)|id_(rsa|dsa|ecdsa|ed25519)"
                          r"|\.netrc|\.pgpass|\.htpasswd|\.pypirc|credentials(\.json)?|config\.json")


DEFAULT_RULES = Rules()
# How every `--json` answer of the CLI begins (cli/output.py), indented or not.
_OWN_OUTPUT = re.compile(rb'\A\s*\{\s*"ok":\s*(?:true|false),\s*"diagnostics":\s*\[')


@functools.lru_cache(maxsize=4096)
def _own_output(path: str, signature: tuple[int, int, int, int, int]) -> bool:
    """Whether the regular file at ``path`` is one of Railguard's ``--json`` answers (its first bytes; read
    again only when its lstat signature changes)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return bool(_OWN_OUTPUT.match(os.read(fd, 64)))
    except OSError:
        return False
    finally:
        os.close(fd)


def list_source(root: Path, rules: Rules = DEFAULT_RULES) -> Listing:
    """The files that make up the source at ``root``, sorted, and what was left out and why."""
    ignore, allowed = ignore_spec(root), _allowed_secrets(root)
    real_root = os.path.realpath(root)
    excluded = {os.path.realpath(p) for p in rules.exclude}  # the walk's paths are real: root is resolved
    excluded_names = {os.path.basename(p) for p in excluded}
    found = Listing()
    candidates: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(root):  # never follows directory symlinks
        rel_folder = os.path.relpath(folder, root)
        prefix = "" if rel_folder == "." else rel_folder.replace(os.sep, "/") + "/"
        dirs[:] = sorted(d for d in dirs if not ignore.match_file(prefix + d + "/")
                         and not (d in excluded_names and os.path.join(folder, d) in excluded))
        for d in dirs:  # the walk does not follow a folder symlink: say so rather than drop it silently
            if os.path.islink(os.path.join(folder, d)):
                found.links.append(prefix + d + "/")
        for name in sorted(files):
            rel = prefix + name
            if ignore.match_file(rel) or (name in excluded_names and os.path.join(folder, name) in excluded):
                continue
            if _SECRET_NAME.fullmatch(name) and SECRETS.match_file(rel) and not allowed.match_file(rel):
                found.secrets.append(rel)
                continue
            candidates.append((rel, os.path.join(folder, name)))
        if len(candidates) > MAX_FILES:
            raise TooManyFiles(f"more than {MAX_FILES} files under {root}; add the bulk to .railguardignore")
    for rel, path in candidates:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # removed while listing
        readable = path
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(path)
            inside = target.startswith(real_root + os.sep)
            target_rel = os.path.relpath(target, real_root).replace(os.sep, "/") if inside else ""
            try:
                tst = os.lstat(target) if inside else None
            except OSError:
                tst = None
            if (tst is None or not stat.S_ISREG(tst.st_mode) or ignore.match_file(target_rel)
                    or (SECRETS.match_file(target_rel) and not allowed.match_file(target_rel))
                    or os.path.abspath(target) in excluded):
                found.links.append(rel)
                continue
            st, readable = tst, target
        elif not stat.S_ISREG(st.st_mode):
            found.special.append(rel)
            continue
        signature = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_mode)
        if rel.endswith(".json") and _own_output(readable, signature) and not allowed.match_file(rel):
            found.own_output.append(rel)
            continue
        found.files.append(Listed(rel, readable, st.st_size, signature))
    found.files.sort(key=lambda f: f.rel)
    if found.total > rules.max_bytes:
        largest = sorted(((f.rel, f.size) for f in found.files), key=lambda x: -x[1])[:5]
        raise TooLarge(found.total, rules.max_bytes, largest)
    return found


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of the files that make up the source, sorted."""
    return [f.rel for f in list_source(root, Rules(max_bytes=1 << 62)).files]
