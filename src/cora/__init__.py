"""CORA: Contrastive Overlap Representation Alignment for 360° panoramas."""

import sys

__version__ = "0.1.0"

#: the transformers package whose loading registers CORA: its Auto classes (``import transformers`` alone
#: stays as cheap as without CORA; the registration imports torch and ``cora.model``)
_AUTO = "transformers.models.auto"


def _register_with_transformers() -> None:
    """Make transformers' Auto classes know ``model_type: "cora"`` (``cora.model.hf``). This runs once they
    are loaded, whichever comes first; inside our own model imports the registration happens when
    ``cora.model`` finishes loading."""
    import importlib

    try:
        importlib.import_module("cora.model.hf")
    except ImportError:  # cora.model is being imported right now: it registers when it is done
        return
    except Exception as exc:  # never make importing transformers fail because of us
        import logging

        logging.getLogger(__name__).warning("could not register CORA with transformers' Auto classes: %s", exc)


class _AfterAutoImport:
    """A ``sys.meta_path`` finder that wraps the loading of transformers' Auto classes to register CORA right
    after it. It stays until they are really imported (``find_spec`` probes do not use it up)."""

    def __init__(self) -> None:
        self._looking = False

    def find_spec(self, name, path=None, target=None):
        if name != _AUTO or self._looking:
            return None
        import importlib.util

        self._looking = True  # the real finders, without us
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._looking = False
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module):
                if self in sys.meta_path:
                    sys.meta_path.remove(self)
                load(module)
                _register_with_transformers()

            spec.loader.exec_module = exec_module
        return spec


if _AUTO in sys.modules:
    _register_with_transformers()
else:
    sys.meta_path.insert(0, _AfterAutoImport())
