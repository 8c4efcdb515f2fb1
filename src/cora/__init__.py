"""CORA: Contrastive Overlap Representation Alignment for 360° panoramas."""

import contextlib
import importlib
import importlib.util
import logging
import sys

__version__ = "0.1.0"


def _register_with_transformers() -> None:
    """Make transformers' Auto classes know ``model_type: "cora"`` (``cora.model.hf``). Importing transformers
    costs seconds, so ``import cora`` does not: this runs once transformers is imported, whichever comes
    first. Inside our own model imports the registration happens when ``cora.model`` finishes loading."""
    try:
        importlib.import_module("cora.model.hf")
    except ImportError:  # cora.model is being imported right now: it registers when it is done
        return
    except Exception as exc:  # never make `import transformers` fail because of us
        logging.getLogger(__name__).warning("could not register CORA with transformers' Auto classes: %s", exc)


class _AfterTransformersImport:
    """A ``sys.meta_path`` finder that wraps transformers' loading to register CORA right after it. It stays
    until transformers is really imported (``find_spec`` probes, e.g. "is it installed?", do not use it up)."""

    def __init__(self) -> None:
        self._looking = False

    def find_spec(self, name, path=None, target=None):
        if name != "transformers" or self._looking:
            return None
        self._looking = True  # the real finders, without us
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._looking = False
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module):
                with contextlib.suppress(ValueError):
                    sys.meta_path.remove(self)
                load(module)
                _register_with_transformers()

            spec.loader.exec_module = exec_module
        return spec


if "transformers" in sys.modules:
    _register_with_transformers()
else:
    sys.meta_path.insert(0, _AfterTransformersImport())
