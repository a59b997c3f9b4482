"""Release 2 of the notes: the column is now called `body` (see migrate.py)."""

import notes


class Handler(notes.Handler):
    column = "body"


notes.main(Handler)
