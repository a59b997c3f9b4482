# Falcon's "look" tutorial app (falconry/falcon examples/look): its factory needs an argument, so the
# server calls get_app(); its requirements sit in requirements/look, which init does not read.
import os

import falcon

from .images import Collection, ImageStore


def create_app(image_store):
    app = falcon.App()
    app.add_route('/images', Collection(image_store))
    return app


def get_app():
    storage_path = os.environ.get('LOOK_STORAGE_PATH', '.')
    return create_app(ImageStore(storage_path))
