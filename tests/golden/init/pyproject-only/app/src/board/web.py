import os

from flask import Flask


def create_app():
    app = Flask(__name__)
    app.config["DATABASE_URL"] = os.environ.get("DATABASE_URL", "sqlite:///board.db")

    @app.get("/healthz")
    def healthz():
        return "ok"

    return app
