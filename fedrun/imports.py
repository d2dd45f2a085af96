"""Import user code named as `pkg.module:attr` (or `pkg.module`), failing with one line."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from fedrun.errors import ConfigError


def import_object(path: str, label: str) -> Any:
    """The object at `pkg.module:attr.sub` (the module itself without ':'). `label` names the
    config field in errors."""
    module_name, _, attr = path.partition(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the working directory's packages import
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise ConfigError(
                label,
                f"no module named {e.name!r}",
                "check the import path (run from the directory that holds the package)",
            ) from None
        raise ConfigError(
            label, f"importing {module_name} failed: {e!r}", "fix that module"
        ) from None
    except Exception as e:  # noqa: BLE001 - the user's module raised while importing
        raise ConfigError(
            label, f"importing {module_name} failed: {e!r}", "fix that module"
        ) from None
    for part in filter(None, attr.split(".")):
        if not hasattr(obj, part):
            raise ConfigError(
                label, f"{module_name} has no attribute {part!r}", "check the name after ':'"
            )
        obj = getattr(obj, part)
    return obj
