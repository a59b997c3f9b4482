"""An app that hangs at start-up: it never listens and ignores SIGTERM."""

import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("connecting to the license server...", flush=True)
while True:
    time.sleep(1)
