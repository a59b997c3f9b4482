import os


class ImageStore:
    def __init__(self, storage_path):
        self._storage_path = storage_path

    def path(self, name):
        return os.path.join(self._storage_path, name)


class Collection:
    def __init__(self, image_store):
        self._image_store = image_store

    def on_get(self, req, resp):
        resp.media = {"images": os.listdir(self._image_store.path(""))}
