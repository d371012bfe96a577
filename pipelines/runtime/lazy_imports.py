"""Deferring the modules TensorFlow imports at start-up that a Skewless job never uses.

``import tensorflow`` loads Google's API discovery client (for its GCE cluster resolver: e-mail
parsing, httplib2, oauth2client) and, through Keras, SciPy's image and linear-algebra packages,
at the start of every process that loads TensorFlow.
Inside :func:`deferred`, those modules are created with the standard library's
:class:`importlib.util.LazyLoader`: the importer gets a module object at once, and the module's
code runs the first time one of its attributes is used, so anything that does use them still
works, unchanged. Only modules that their importers bind without touching an attribute are listed:
a module whose attributes are read at import time (``from scipy.sparse import issparse``) would
load at once anyway.

A deferred module answers its import metadata (``__name__``, ``__file__``, ``__spec__``, ...)
without loading: code that scans ``sys.modules`` for a file, as AutoGraph does whenever it converts
a function (``tf.saved_model.save`` converts its signature wrappers), would otherwise load all three
just to read their ``__file__``.
"""

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator

__all__ = ["DEFERRED", "deferred"]

DEFERRED = frozenset({"googleapiclient.discovery", "scipy.linalg", "scipy.ndimage"})


# set on the module before its code runs; reading them does not need the code to have run
_METADATA = frozenset({"__name__", "__file__", "__cached__", "__spec__", "__loader__", "__package__"})


class _DeferredModule(importlib.util._LazyModule):
    """The standard library's lazily loaded module, except that its import metadata is read
    without loading it (``__path__`` still loads it: importing a submodule runs the package first)."""

    def __getattribute__(self, attr):
        if attr in _METADATA:
            return object.__getattribute__(self, attr)
        return super().__getattribute__(attr)


class _DeferringLoader(importlib.util.LazyLoader):
    def exec_module(self, module):
        super().exec_module(module)
        module.__class__ = _DeferredModule


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds the ``DEFERRED`` modules as the path finder does, with a lazy loader around theirs."""

    def find_spec(self, name, path, target=None):
        if name not in DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _DeferringLoader(spec.loader)
        return spec


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Imports inside the block load the ``DEFERRED`` modules lazily (on first attribute use)."""
    finder = _DeferringFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
