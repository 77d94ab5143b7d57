"""A handler module that kills the worker importing it (crash at start-up)."""

from __future__ import annotations

import os
import sys

import workerbridge as wb

if "workerbridge._worker" in sys.modules and os.environ.get("WB_TEST_CRASH_AT_START"):
    os._exit(17)


@wb.handler("crashy", "ping")
def ping(ctx: wb.Context, payload: object) -> str:
    return "pong"
