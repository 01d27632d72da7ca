"""armorflow.operator: drives VarmorPolicy / VarmorClusterPolicy status and the pipeline's
modeling windows (see docs/operator.md).

This folder is installed as ``armorflow.operator`` (``package-dir`` in pyproject.toml).
Run from a checkout's root with the current directory first on ``sys.path`` (``python -S``,
some embedded or isolated interpreters), ``import operator`` could find this folder
instead of the standard library module of that name; it then hands the real one over, so
that nothing imports this package as ``operator``.
"""

if __name__ == "operator":  # pragma: no cover - exercised in a subprocess by the tests
    # Only modules already loaded at start-up are used here: importlib.util, sysconfig and
    # the like import collections, which imports operator, which is this module.
    import os
    import sys

    _path = os.path.join(os.path.dirname(os.__file__), "operator.py")
    _stdlib = type(sys)("operator")
    _stdlib.__file__ = _path
    with open(_path, encoding="utf-8") as _source:
        exec(compile(_source.read(), _path, "exec"), _stdlib.__dict__)
    # The import system returns what sys.modules holds after this module ran.
    sys.modules["operator"] = _stdlib
