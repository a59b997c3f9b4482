"""The healthy sample app: notes as written (see notes.py)."""

import notes

notes.main()
