"""Settings of a Django project, with the lines `railguard init` asks for already changed."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost").split(",")
INSTALLED_APPS = ["django.contrib.contenttypes", "board"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(os.environ.get("DJANGO_DATA_DIR", BASE_DIR), "db.sqlite3"),
    }
}
MEDIA_ROOT = os.path.join(os.environ.get("DJANGO_DATA_DIR", BASE_DIR), "media")
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
