"""Railguard: a deployment control plane for AI agents and the people who supervise them."""

__version__ = "0.1.0"
