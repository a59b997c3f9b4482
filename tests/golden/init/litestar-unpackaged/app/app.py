"""Minimal Litestar application."""
from __future__ import annotations

from typing import Any

from litestar import Litestar, get


@get("/sync", sync_to_thread=False)
def sync_hello_world() -> dict[str, Any]:
    return {"hello": "world"}


app = Litestar(route_handlers=[sync_hello_world])
