"""The web service reaches the api through the edge (API_URL), and its health check asks the api too."""

import os
import urllib.request

import notes

API_URL = os.environ["API_URL"]


class Handler(notes.Handler):
    def health(self) -> str | None:
        problem = super().health()
        if problem:
            return problem
        try:
            with urllib.request.urlopen(API_URL + "/healthz", timeout=0.4) as answer:
                return None if answer.status == 200 else f"api answered {answer.status}"
        except OSError as exc:
            return f"api: {exc}"


notes.main(Handler)
