"""The control-plane daemon: one per state folder; owns the store's writes, operations, processes, the edge."""
