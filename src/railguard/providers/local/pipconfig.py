"""The machine's pip configuration, translated for uv, so builds use the index the user chose.

uv does not read pip's files. A machine set up for pip (``/etc/pip.conf``, ``/etc/xdg/pip/pip.conf``,
``~/.config/pip/pip.conf``, ``PIP_CONFIG_FILE``, ``PIP_*`` variables) must still build the same way
with uv, including on a fresh CI machine whose only package source is a mirror: nothing may
reach another index at run time. uv's own settings (``UV_*`` variables, ``uv.toml``) win over the
translation. Called by :mod:`railguard.providers.local.layers` for every uv command of a build.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

# pip option -> (uv variable, separator uv expects between several values)
_OPTIONS = {
    "index-url": ("UV_DEFAULT_INDEX", None),
    "extra-index-url": ("UV_INDEX", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "constraint": ("UV_CONSTRAINT", " "),
    "no-index": ("UV_NO_INDEX", None),
}
_SECTIONS = ("global", "install")


def _files() -> list[Path]:
    """pip's configuration files in its own order of precedence (later wins)."""
    if os.environ.get("PIP_CONFIG_FILE") == os.devnull:
        return []
    dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    found = [Path(d) / "pip" / "pip.conf" for d in reversed(dirs.split(":")) if d]
    found.insert(0, Path("/etc/pip.conf"))
    home = Path(os.path.expanduser("~"))
    xdg_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    found += [home / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf"]
    if named := os.environ.get("PIP_CONFIG_FILE"):
        found.append(Path(named))
    return found


def pip_settings() -> dict[str, str]:
    """pip's effective index settings: option -> value (whitespace-separated lists kept as pip wrote them)."""
    values: dict[str, str] = {}
    for path in _files():
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error):
            continue  # pip would complain; a build still uses what the other files say
        for section in _SECTIONS:
            if parser.has_section(section):
                for option in _OPTIONS:
                    if parser.has_option(section, option):
                        values[option] = parser.get(section, option)
    for option in _OPTIONS:
        env_value = os.environ.get("PIP_" + option.upper().replace("-", "_"))
        if env_value is not None:
            values[option] = env_value
    return values


def uv_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Variables that make uv use pip's index configuration; uv's own settings in ``base`` are kept."""
    source = dict(os.environ if base is None else base)
    out: dict[str, str] = {}
    user_set_uv = any(k in source for k in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL",
                                            "UV_NO_INDEX", "UV_FIND_LINKS", "UV_CONFIG_FILE"))
    if not user_set_uv:
        for option, value in pip_settings().items():
            name, sep = _OPTIONS[option]
            if option == "no-index":
                if value.strip().lower() in ("1", "true", "yes", "on"):
                    out[name] = "1"
                continue
            items = value.split()
            if items:
                out[name] = (sep or " ").join(items) if sep else items[0]
        if "UV_INDEX" in out or "UV_FIND_LINKS" in out:
            # pip takes the best version across every index; uv's default stops at the first index that
            # has the name. Same answers as pip, so a mirror that lags behind does not pin old versions.
            out.setdefault("UV_INDEX_STRATEGY", "unsafe-best-match")
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE"):
        if source.get(name) and "SSL_CERT_FILE" not in source:
            out["SSL_CERT_FILE"] = source[name]
    return out
