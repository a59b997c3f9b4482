"""Listens on a port written in the code instead of $PORT (port-binding). The tests fill in a free port."""

import notes

notes.main(port=int("{FIXED_PORT}"))
