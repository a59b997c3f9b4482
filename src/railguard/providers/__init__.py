"""Adapters to runtimes behind one small protocol (see base.py)."""
