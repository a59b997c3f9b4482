import os

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

API_TOKEN = os.environ["API_TOKEN"]
UPLOADS = os.environ.get("UPLOAD_DIR", "uploads")


async def homepage(request):
    return PlainTextResponse("hello")


async def ping(request):
    return PlainTextResponse("pong")


app = Starlette(routes=[Route("/", homepage), Route("/ping", ping)])
