"""Make the plain `lm_eval --model slm ...` command work: a .pth start-up hook in site-packages.

lm-eval 0.4 discovers models only through its own registry (no entry-point group), so an outside package has
to register itself when lm-eval is imported. `slm lm-eval --install-plugin` writes one .pth file whose line
runs at interpreter start-up (site.py executes .pth lines that begin with "import"). The hook imports nothing
of slm or torch: it waits on sys.meta_path for `lm_eval.api.registry` and, once that module has run, registers
"slm" as a lazy placeholder ("slm.eval.lm_eval_adapter:SlmLM") that lm-eval imports only when asked for it.
It registers after importing `lm_eval.models`: lm-eval loads its own backends only into an empty registry, so
registering into an empty one would hide them (`--model hf` would be "not found").
`slm lm-eval ...` needs none of this: it registers the adapter itself, then runs lm-eval's CLI.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

PTH_NAME = "slm-lm-eval-plugin.pth"
TARGET = "slm.eval.lm_eval_adapter:SlmLM"

HOOK = f'''
import sys
from importlib.machinery import PathFinder

class _SlmLmEvalHook:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "lm_eval.api.registry":
            return None
        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def run_then_register(module):
            run(module)
            try:
                import lm_eval.models  # lm-eval's own backends first (see the module docstring)

                if "slm" not in module.model_registry:
                    module.model_registry.register("slm", target={TARGET!r})
            except Exception:
                pass

        spec.loader.exec_module = run_then_register
        return spec

if not any(getattr(f, "__name__", "") == "_SlmLmEvalHook" for f in sys.meta_path):
    sys.meta_path.insert(0, _SlmLmEvalHook)
'''


def pth_line() -> str:
    # A fresh globals dict: site.py runs .pth lines inside a function, whose locals a class body cannot see.
    return f"import sys; exec({HOOK!r}, {{'__name__': 'slm_lm_eval_hook'}})\n"


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def install(site_dir: str | Path | None = None) -> Path:
    from slm.io import atomic_write_text

    path = Path(site_dir or site_packages()) / PTH_NAME
    atomic_write_text(path, pth_line())
    return path


def uninstall(site_dir: str | Path | None = None) -> Path | None:
    path = Path(site_dir or site_packages()) / PTH_NAME
    if path.exists():
        path.unlink()
        return path
    return None
