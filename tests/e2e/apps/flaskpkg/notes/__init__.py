"""A Flask package app with an app factory; its notes live in the instance folder (SQLite)."""

import os
import sqlite3

from flask import Flask, request

VERSION = os.environ.get("APP_VERSION", "v-one")


def create_app():
    app = Flask(__name__, instance_relative_config=True, instance_path=os.environ.get("FLASK_INSTANCE_PATH"))
    os.makedirs(app.instance_path, exist_ok=True)
    database = os.path.join(app.instance_path, "notes.db")

    def db():
        conn = sqlite3.connect(database)
        conn.execute("CREATE TABLE IF NOT EXISTS notes (text TEXT)")
        return conn

    @app.get("/healthz")
    def healthz():
        db().execute("SELECT 1")
        return "ok"

    @app.get("/version")
    def version():
        return VERSION

    @app.route("/notes", methods=["GET", "POST"])
    def notes():
        with db() as conn:
            if request.method == "POST":
                conn.execute("INSERT INTO notes VALUES (?)", (request.get_data(as_text=True),))
                return "saved", 201
            return "\n".join(row[0] for row in conn.execute("SELECT text FROM notes"))

    return app
