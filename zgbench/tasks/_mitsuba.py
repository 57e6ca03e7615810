"""Import Mitsuba 3 with the right variant, finding an LLVM that Dr.Jit can use.

On the CPU Mitsuba runs the ``llvm_ad_rgb`` variant, which needs libLLVM >= 16 (Debian 12's
LLVM 15 crashes Dr.Jit 1.5). Dr.Jit reads ``DRJIT_LIBLLVM_PATH``; if it is unset we look for the
newest libLLVM >= 16 in the usual library folders before importing. On a GPU the
``cuda_ad_rgb`` variant is used. Both are shared by every task that renders with Mitsuba.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
from types import ModuleType

from zgbench import MissingExtra, UsageError

LLVM_HINT = (
    "Mitsuba on the CPU needs libLLVM >= 16: on Debian/Ubuntu `apt-get install -y libllvm19`, "
    "or point DRJIT_LIBLLVM_PATH at a libLLVM.so of version 16 or newer."
)
_SEARCH = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/lib64",
           "/usr/local/lib", "/usr/lib/llvm-*/lib", "/opt/homebrew/opt/llvm/lib")


def find_libllvm(minimum: int = 16) -> str | None:
    """The path of the newest libLLVM with major version >= ``minimum``, or ``None``."""
    best: tuple[int, str] | None = None
    for folder in _SEARCH:
        for path in glob.glob(os.path.join(folder, "libLLVM*.so*")) + glob.glob(
                os.path.join(folder, "libLLVM*.dylib")):
            match = re.search(r"libLLVM[-.]?(?:so\.)?(\d+)", os.path.basename(path))
            if match and int(match.group(1)) >= minimum:
                version = int(match.group(1))
                if best is None or version > best[0]:
                    best = (version, path)
    return best[1] if best else None


def variant_for(device: str) -> str:
    return "cuda_ad_rgb" if str(device).startswith("cuda") else "llvm_ad_rgb"


def load(device: str = "cpu", needed_by: str = "this task") -> ModuleType:
    """Import mitsuba, set the variant for ``device`` and return the module."""
    if importlib.util.find_spec("mitsuba") is None:
        raise MissingExtra(f"{needed_by} needs the extra graphics (Mitsuba 3): "
                           "pip install 'zgbench[graphics]'")
    variant = variant_for(device)
    if variant.startswith("llvm") and not os.environ.get("DRJIT_LIBLLVM_PATH"):
        path = find_libllvm()
        if path is None:
            raise UsageError(f"{needed_by}: no libLLVM >= 16 found. {LLVM_HINT}")
        os.environ["DRJIT_LIBLLVM_PATH"] = path
    import mitsuba as mi

    try:
        mi.set_variant(variant)
    except Exception as exc:  # the variant's backend (LLVM or CUDA) could not start
        raise UsageError(f"{needed_by}: Mitsuba variant {variant} is unavailable ({exc}). "
                         f"{LLVM_HINT if variant.startswith('llvm') else ''}") from None
    return mi
