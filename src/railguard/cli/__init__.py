"""The command line: parse arguments, call the engine (later the daemon), render with rich or --json."""
