# Quart's blog example (pallets/quart examples/blog): Quart requires Hypercorn, its production server; its
# SQLite file sits beside the code, read-only in a release (init names the line).
from pathlib import Path

from quart import Quart

app = Quart(__name__)

app.config.update(
    {
        "DATABASE": Path(app.root_path) / "blog.db",
    }
)


@app.get("/")
async def posts():
    return "posts"


def run() -> None:
    app.run()
