import os
import sqlite3

from fastapi import FastAPI

app = FastAPI()
DB = os.environ.get("DATABASE_PATH", "todo.db")


@app.get("/health")
def health():
    sqlite3.connect(DB).execute("select 1")
    return {"ok": True}


@app.get("/")
def index():
    return {"todo": []}
