"""A Flask package app with an app factory, as in the Flask tutorial."""
import os

from flask import Flask


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY=os.environ["SECRET_KEY"],
        SQLALCHEMY_DATABASE_URI="sqlite:///shop.db",
    )
    os.makedirs(app.instance_path, exist_ok=True)

    from . import views
    app.register_blueprint(views.bp)
    return app
