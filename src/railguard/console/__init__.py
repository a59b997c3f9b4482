"""The supervisor's web console: pages over the same daemon API calls the CLI makes (see docs/console.md)."""
