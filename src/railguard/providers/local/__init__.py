"""The embedded local runtime: app replicas as real OS processes on this machine."""
