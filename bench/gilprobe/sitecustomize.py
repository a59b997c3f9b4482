"""A probe loaded into the daemon (and the MCP server) by bench/mcp_tail.py through ``PYTHONPATH``.

Why it exists: on a shared machine the MCP read tools' wall-clock tail says little; what the tail is made of
does. In the daemon this records, per API request, its wall time and the CPU time of the thread that served it
(``Handler._dispatch``: the difference is time the request was ready to run but waited, for the GIL or for a
CPU), each cyclic-GC collection's duration, and every second the CPU time of each thread by name (the
background passes). ``RG_PROBE_SWITCH`` sets ``sys.setswitchinterval`` in every Python process the bench
starts (to try values without changing code). Results go to ``$RG_PROBE_OUT/<pid>.json`` when
``$RG_PROBE_OUT/dump-<pid>`` appears (the bench asks; writing holds the GIL too). Never imported by
Railguard itself.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time

_switch = os.environ.get("RG_PROBE_SWITCH")
if _switch:
    sys.setswitchinterval(float(_switch))

_out = os.environ.get("RG_PROBE_OUT")
_thresholds = os.environ.get("RG_PROBE_GC")  # "700,10,10": gc.set_threshold in every process
if _thresholds:
    gc.set_threshold(*(int(x) for x in _thresholds.split(",")))
_freeze = float(os.environ.get("RG_PROBE_FREEZE_S") or 0)  # the daemon: gc.freeze() once, this long after start


if _out and ("daemon" in sys.argv):
    requests: list[tuple[str, float, float, float]] = []  # path, start (epoch), wall ms, thread cpu ms
    collections: list[tuple[int, float, float]] = []  # generation, start (epoch), ms
    threads: dict[str, float] = {}
    _gc_start = [0.0]

    def _on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _gc_start[0] = time.perf_counter()
        else:
            collections.append((info["generation"], time.time(), (time.perf_counter() - _gc_start[0]) * 1000))

    gc.callbacks.append(_on_gc)

    def _patch() -> bool:
        api = sys.modules.get("railguard.daemon.api")
        if api is None or not hasattr(api, "Handler"):
            return False
        original = api.Handler._dispatch

        def timed(self, method):  # type: ignore[no-untyped-def]
            t0, c0, at = time.perf_counter(), time.thread_time(), time.time()
            try:
                original(self, method)
            finally:
                requests.append((self.path.split("?")[0], at, (time.perf_counter() - t0) * 1000,
                                 (time.thread_time() - c0) * 1000))

        api.Handler._dispatch = timed
        return True

    def _probe() -> None:
        patched = False
        started = time.monotonic()
        frozen = not _freeze
        while True:
            time.sleep(0.5)
            if not frozen and time.monotonic() - started >= _freeze:
                gc.collect()
                gc.freeze()
                frozen = True
            if not patched:
                patched = _patch()
            for t in threading.enumerate():
                if t.ident is None:
                    continue
                try:
                    cpu = time.clock_gettime(time.pthread_getcpuclockid(t.ident))
                except OSError:
                    continue
                name = t.name if t.name.startswith("railguard") else ("request" if "process_request" in t.name
                                                                       else t.name)
                key = f"{name}:{t.ident}"
                threads[key] = cpu
            trigger = os.path.join(_out, f"dump-{os.getpid()}")
            if not os.path.exists(trigger):  # written only when asked: a dump holds the GIL too
                continue
            os.unlink(trigger)
            data = {"pid": os.getpid(), "at": time.time(), "requests": requests[-5000:],
                    "gc": collections[-5000:], "threads": threads, "switch": sys.getswitchinterval()}
            path = os.path.join(_out, f"{os.getpid()}.json")
            with open(path + ".tmp", "w") as f:
                json.dump(data, f)
            os.replace(path + ".tmp", path)

    threading.Thread(target=_probe, name="probe", daemon=True).start()
