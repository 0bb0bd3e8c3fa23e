"""Names a package imports on first use (PEP 562), for dpst_ext and dpst_ext.engine."""
import importlib
import sys


def lazy_getattr(package: str, names: dict):
    """The module ``__getattr__`` of ``package``: ``names`` maps each name to (module, attribute), attribute
    None for the module itself. A name is imported when first used, then kept in the package's namespace."""

    def __getattr__(name):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = names[name]
        value = importlib.import_module(module)
        if attr is not None:
            value = getattr(value, attr)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
