"""Minimal re-creation of the pickling side of NVIDIA's `torch_utils.persistence`.

Only what the fixture writer needs: a decorator whose instances pickle as
`_reconstruct_persistent_obj(meta)` with meta = {type, version, module_src,
class_name, state}, the record format of the official network pickles.
"""

import inspect
import sys

_version = 6


def _reconstruct_persistent_obj(meta):
    raise RuntimeError("the fixture is only written here, never loaded with this module")


def persistent_class(orig_class):
    module_src = inspect.getsource(sys.modules[orig_class.__module__])

    class Decorator(orig_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_args = args
            self._init_kwargs = kwargs

        def __reduce__(self):
            fields = list(super().__reduce__())
            fields += [None] * max(3 - len(fields), 0)
            meta = dict(type="class", version=_version, module_src=module_src,
                        class_name=orig_class.__name__, state=fields[2])
            return (_reconstruct_persistent_obj, (meta,), None)

    Decorator.__name__ = orig_class.__name__
    return Decorator
