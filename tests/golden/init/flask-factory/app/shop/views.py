from flask import Blueprint

bp = Blueprint("shop", __name__)


@bp.route("/healthz")
def healthz():
    return "ok"


@bp.route("/")
def index():
    return "shop"
