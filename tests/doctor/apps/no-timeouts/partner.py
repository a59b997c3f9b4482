"""Calls a partner's API without a timeout: a slow partner holds the request forever (timeouts check)."""

import requests


def exchange_rate(currency: str) -> float:
    return float(requests.get(f"https://rates.example.com/{currency}").json()["rate"])
