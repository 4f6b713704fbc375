"""Per-service load: `python -m loadtest <gateway|rooms|queue|chat|auth> [--start] ...`.

From a program: `await run_driver(service, LoadOptions(...), Target(...))` returns the report.
"""

from .api import DRIVERS, run_driver
from .errors import LoadError
from .options import LoadOptions, Target

__all__ = ["DRIVERS", "LoadError", "LoadOptions", "Target", "run_driver"]
