"""How large a spec text may be: the one limit its reader and its parser both apply.

Why its own module: the reader (:func:`railguard.engine.workspace.read_spec_file`) runs before anything heavy is
imported (``railguard validate`` reads the spec while its command loads); the parser
(:func:`railguard.model.specfile.parse_spec`) refuses a longer text however it got it.
"""

MAX_SPEC_BYTES = 8_000_000  # a 10,000-service spec is ~2.3 MB; nothing real comes near this
