# Quart's blog example (pallets/quart examples/blog): Quart requires Hypercorn, its production server.
from quart import Quart

app = Quart(__name__)


@app.get("/")
async def posts():
    return "posts"


def run() -> None:
    app.run()
