"""Secret values: encryption at rest with a key kept outside the state folder, and redaction."""
