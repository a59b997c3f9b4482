"""The command line: parse arguments, then either do local work in-process (init, validate, schema, doctor)
or call the daemon through :mod:`railguard.client` (everything that reads or changes state), and render the
answer with rich or as one ``--json`` document. The entry point is :func:`railguard.cli.main.main`."""
