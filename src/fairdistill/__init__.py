"""fairdistill: distil a teacher into a small student without amplifying its biases, and measure it.

The Python API (:mod:`fairdistill.api`) is reached from here: ``fairdistill.run(config)``,
``fairdistill.load_results(run_dir)``, ``fairdistill.make_method(...)``, ... Its names are imported on first use,
so ``import fairdistill`` stays fast (torch is loaded only when something needs it).
"""

__version__ = "0.1.0"

__all__ = [
    "Objective",
    "Results",
    "TappedModel",
    "__version__",
    "collate",
    "dry_run",
    "evaluate_model",
    "load_config",
    "load_data",
    "load_results",
    "make_config",
    "make_method",
    "resume",
    "run",
    "teacher_outputs",
]

#: The names of fairdistill.api available as attributes of the package.
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> object:
    if name in _API:
        from fairdistill import api

        value = getattr(api, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'fairdistill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
