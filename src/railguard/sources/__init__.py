"""The app source: which files make a release, their digest, and copying them into an artifact."""
