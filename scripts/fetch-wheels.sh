#!/usr/bin/env bash
# Fetch the wheels a GPU image lacks (Python 3.12, manylinux x86_64) into .whl/ (ignored by
# git), within what a lent device carries (64 MiB for the whole working tree), and print the
# `carry` line and the install command to run there. See README, "On a GPU".
#
#   scripts/fetch-wheels.sh            # into .whl/ of this checkout
#   WHEELS=/path scripts/fetch-wheels.sh
#
# What the device image lacks (/work/.library/device/KINDS.md): mitsuba and drjit (graphics
# tasks), phiflow and phiml (pde-sol), cma, nevergrad with bayesian-optimization and
# directsearch, cbx (dfo optimizers), ray (--executor ray). Everything else they need (numpy,
# scipy, pandas, scikit-learn, matplotlib, h5py, packaging, typing-extensions) is in the
# image. Versions are those the CPU test suite runs with (.venv).
#
# Two adjustments, both printed when they happen:
# - Mitsuba's wheel (62 MB) holds 15 variants and their headers; zgbench uses cuda_ad_rgb on a
#   GPU and llvm_ad_rgb on the CPU (zgbench/tasks/_mitsuba.py). The wheel is repacked with
#   those two, scalar_rgb, and without the C++ headers and the spectral upsampling table
#   (data/srgb.coeff, read by spectral variants only): about 40 MB.
# - phiflow and phiml publish source archives only: they are pure Python, so pip builds their
#   wheels here (py3-none-any), without running anything on the device.
# ray (79 MB) does not fit beside the rest: it is left out, and said so.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${WHEELS:-$root/.whl}"
limit_mib=64
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
binary=(mitsuba==3.9.1 drjit==1.5.0 cma==4.5.0 nevergrad==1.0.12 bayesian-optimization==1.4.0
        directsearch==1.1 cbx==1.0.4)
source_only=(phiflow==3.4.0 phiml==1.16.1)
optional=(ray==2.60.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
          referencing==0.37.0 rpds-py==2026.9.1)  # ray and what the image lacks of its needs
platform=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-wheels: ${binary[*]}"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: "${platform[@]}" -d "$dest" "${binary[@]}"

echo "fetch-wheels: building pure-Python wheels of ${source_only[*]} (source archives only)"
"$PYTHON" -m pip download -q --no-deps --no-binary=:all: -d "$tmp/src" "${source_only[@]}"
"$PYTHON" -m pip wheel -q --no-deps -w "$tmp/built" "$tmp"/src/*
for whl in "$tmp"/built/*.whl; do
    case "$(basename "$whl")" in
        *-py3-none-any.whl) cp "$whl" "$dest/" ;;
        *) echo "fetch-wheels: $(basename "$whl") is not pure Python: cannot carry it" >&2; exit 1 ;;
    esac
done

echo "fetch-wheels: slimming Mitsuba to the variants zgbench uses"
"$PYTHON" - "$dest" <<'PY'
"""Repack mitsuba-*.whl with the cuda_ad_rgb, llvm_ad_rgb and scalar_rgb variants only,
without C++ headers and the spectral table; RECORD lists exactly what is left."""
import re, sys, zipfile
from pathlib import Path

KEEP = ("cuda_ad_rgb", "llvm_ad_rgb", "scalar_rgb")
VARIANT = re.compile(r"^mitsuba/(scalar|llvm_ad|cuda_ad)_[a-z_]+\.cpython-[^/]+\.so$")
for path in Path(sys.argv[1]).glob("mitsuba-*.whl"):
    with zipfile.ZipFile(path) as zin:
        if not any(n.startswith("mitsuba/include/") for n in zin.namelist()):
            print(f"  {path.name}: already slim")
            continue
        def dropped(name):
            if VARIANT.match(name):
                return not any(f"/{v}.cpython" in name for v in KEEP)
            return name.startswith("mitsuba/include/") or name == "mitsuba/data/srgb.coeff"
        before = path.stat().st_size
        out = path.with_suffix(".slim")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
            for info in zin.infolist():
                if dropped(info.filename):
                    continue
                data = zin.read(info)
                if info.filename.endswith(".dist-info/RECORD"):
                    lines = data.decode().splitlines()
                    data = ("\n".join(l for l in lines if not dropped(l.split(",")[0])) + "\n").encode()
                zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    out.replace(path)
    print(f"  {path.name}: {before / 2**20:.1f} -> {path.stat().st_size / 2**20:.1f} MiB")
PY

mib() { du -sb "$@" 2>/dev/null | awk '{s += $1} END {printf "%.1f", s / 1048576}'; }
# what travels besides the wheels: tracked and untracked-not-ignored files of the checkout
tree_mib=$(cd "$root" && git ls-files -z --cached --others --exclude-standard \
    | xargs -0 -r du -cb 2>/dev/null | awk '$2 == "total" {s += $1} END {printf "%.1f", s / 1048576}')
wheels_mib=$(mib "$dest"/*.whl)
room=$(awk -v l=$limit_mib -v t="$tree_mib" -v w="$wheels_mib" 'BEGIN {printf "%.1f", l - t - w - 2}')
echo "fetch-wheels: working tree ${tree_mib} MiB + wheels ${wheels_mib} MiB of ${limit_mib} MiB (2 MiB margin): ${room} MiB left"

"$PYTHON" -m pip download -q --no-deps --only-binary=:all: "${platform[@]}" -d "$tmp/opt" "${optional[@]}"
opt_mib=$(mib "$tmp"/opt/*.whl)
if awk -v r="$room" -v o="$opt_mib" 'BEGIN {exit !(o <= r)}'; then
    cp "$tmp"/opt/*.whl "$dest/"
    echo "fetch-wheels: ray and its needs (${opt_mib} MiB) fit: included"
else
    echo "fetch-wheels: ray and its needs (${opt_mib} MiB) do NOT fit in the ${room} MiB left:" \
         "left out (--executor ray cannot be checked on the device)"
fi

echo "fetch-wheels: $(ls "$dest"/*.whl | wc -l) wheels, $(mib "$dest"/*.whl) MiB in $dest:"
ls -1 "$dest" | sed 's/^/  /'
rel="${dest#"$root"/}"
cat <<EOF

On the device (the device tool's run), carry the folder and install before the command:
  carry: ["$rel"]
  command: python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $rel/*.whl && export PYTHONPATH=/tmp/site || exit; scripts/gpu-check.sh --device cuda --out \$OUT
EOF
