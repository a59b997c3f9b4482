# Falcon's ASGI app object (falconry/falcon examples/things_asgi.py), imported by its class name.
from falcon.asgi import App


class ThingsResource:
    async def on_get(self, req, resp):
        resp.text = "things"


app = App()
app.add_route("/things", ThingsResource())
