"""Make kiln's log lines visible in engine processes without fighting the engine's logging."""

from __future__ import annotations

import logging
import sys

_HANDLER_NAME = "kiln.stderr"
# kiln.env_settings.LOG_LEVELS as Python levels: the native core's "trace" is finer than
# DEBUG, "off" silences kiln's logger.
_LEVELS = {
    "trace": logging.DEBUG - 5,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}


def configure_logging(level: str) -> None:
    logger = logging.getLogger("kiln")
    logger.setLevel(_LEVELS.get(level.lower(), level.upper()))
    # Engines configure their own loggers, rarely the root one. Without any handler the
    # startup report's INFO line would be lost, so kiln brings its own — but only then, so
    # that an application (or pytest) that set up root logging keeps control.
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
