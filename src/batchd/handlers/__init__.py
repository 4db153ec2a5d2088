"""Operation handlers. Every module here is imported so that its @operation handlers register."""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
