"""A FastAPI app; its notes live in an SQLite file named by DATABASE_PATH."""

import os
import sqlite3

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

app = FastAPI()
DATABASE = os.environ.get("DATABASE_PATH", "notes.db")


def db() -> sqlite3.Connection:
    conn = sqlite3.connect(DATABASE)
    conn.execute("CREATE TABLE IF NOT EXISTS notes (text TEXT)")
    return conn


@app.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    db().execute("SELECT 1")
    return "ok"


@app.get("/version", response_class=PlainTextResponse)
def version() -> str:
    return os.environ.get("APP_VERSION", "v-one")


@app.post("/notes", status_code=201, response_class=PlainTextResponse)
async def add(request: Request) -> str:
    with db() as conn:
        conn.execute("INSERT INTO notes VALUES (?)", ((await request.body()).decode(),))
    return "saved"


@app.get("/notes", response_class=PlainTextResponse)
def notes() -> str:
    with db() as conn:
        return "\n".join(row[0] for row in conn.execute("SELECT text FROM notes"))
