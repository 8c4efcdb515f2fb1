"""CORA: Contrastive Overlap Representation Alignment for 360° panoramas."""

import contextlib
import importlib
import importlib.util
import sys

__version__ = "0.1.0"


def _register_with_transformers() -> None:
    """Make transformers' Auto classes know ``model_type: "cora"`` (``cora.model.hf``). Importing transformers
    costs seconds, so ``import cora`` does not: this runs once transformers is imported, whichever comes
    first. Inside our own model imports the registration happens when ``cora.model`` finishes loading."""
    # ImportError: cora.model is being imported right now, and registers when it is done
    with contextlib.suppress(ImportError):
        importlib.import_module("cora.model.hf")


class _AfterTransformersImport:
    """A ``sys.meta_path`` finder that only wraps transformers' loading to register CORA after it."""

    def find_spec(self, name, path=None, target=None):
        if name != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                _register_with_transformers()

            spec.loader.exec_module = exec_module
        return spec


if "transformers" in sys.modules:
    _register_with_transformers()
else:
    sys.meta_path.insert(0, _AfterTransformersImport())
