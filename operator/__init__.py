"""armorflow.operator: drives VarmorPolicy / VarmorClusterPolicy status and the pipeline's
modeling windows (see docs/operator.md).

This folder is installed as ``armorflow.operator`` (``package-dir`` in pyproject.toml).
Run from a checkout's root with the current directory first on ``sys.path`` (``python -S``,
some embedded or isolated interpreters), ``import operator`` could find this folder
instead of the standard library module of that name; it then hands the real one over, so
that nothing imports this package as ``operator``.
"""

if __name__ == "operator":  # pragma: no cover - exercised in a subprocess by the tests
    # Only the import system's own modules are used: anything else (importlib.util, os)
    # may import collections, which imports operator, which is this module.
    import sys

    def _standard_operator() -> object:
        bootstrap = sys.modules["_frozen_importlib"]
        path_finder = sys.modules["_frozen_importlib_external"].PathFinder
        for entry in sys.path:
            spec = path_finder.find_spec("operator", [entry])
            if spec is None or spec.loader is None or spec.origin in (None, __file__):
                continue  # not found there, a namespace portion, or this very folder
            module = bootstrap.module_from_spec(spec)
            sys.modules["operator"] = module
            spec.loader.exec_module(module)
            return module
        raise ImportError("the standard library's operator module was not found")

    # The import system returns what sys.modules holds once this module has run.
    _standard_operator()
