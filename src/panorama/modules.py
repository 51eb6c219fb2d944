"""Optional modules: stages that may not be part of this build yet.

Commands, migrations, routes and pipeline steps are found by module name; a module that does
not exist is skipped, while an import error inside an existing module is raised.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def optional_import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None
        raise
