#!/usr/bin/env bash
# Install Horovod 0.28.1 into the Python environment of ${PYTHON:-python}, built for the
# deep-learning frameworks that environment already has (PyTorch and/or TensorFlow).
#
# Usage:  [PYTHON=/path/to/venv/bin/python] scripts/install_horovod.sh [--mpi] [--verbose]
#   --mpi      also apt-get install Open MPI (libopenmpi-dev openmpi-bin) and build the MPI
#              controller; without it Horovod uses Gloo, which needs nothing from the system
#              (run with `horovodrun --gloo ...`).
#   --verbose  show the compiler's output instead of writing it to a log.
#
# Why not just `pip install horovod==0.28.1`:
# 0.28.1 is the newest release and PyPI has only its source, which was written for the
# frameworks of 2023. The script downloads that source (hash-checked), patches it and builds
# it against the frameworks already installed (--no-build-isolation), with three patches:
#
#  1. CMakeLists.txt (top level): C++14 -> C++17.
#  2. horovod/torch/CMakeLists.txt: C++14 -> C++17. The PyTorch extension forces C++14 for any
#     torch >= 1.5, but the headers of current torch (2.x) use C++17 features and refuse to
#     compile under C++14. The top-level default is raised too so every target agrees
#     (TensorFlow >= 2.10 already switches its own target to C++17).
#  3. horovod/tensorflow/CMakeLists.txt: drop xla_mpi_ops.cc from the sources. That file only
#     registers Horovod's ops with XLA for GPU builds: everything in it after the #includes is
#     inside `#if HAVE_GPU`, so on a CPU build it compiles to nothing. But its includes name
#     tensorflow/compiler/xla/client/xla_builder.h, which newer TensorFlow wheels (2.21) no
#     longer ship under that path, so the file alone breaks the whole TensorFlow build.
#     Not for GPU builds: there the XLA ops would be lost (they are opt-in anyway, through
#     HOROVOD_ENABLE_XLA_OPS=1).
#
# Each patch is checked after it is made; if the source ever differs from what is expected,
# the script stops rather than build something half-patched.
#
# Keras 3 (tf.keras in TensorFlow >= 2.16), as measured with this build: horovod.tensorflow's
# collectives work, but its variable helpers do not take Keras 3 variables. Pass the backing
# tf.Variables instead: hvd.broadcast_variables([v.value for v in model.variables], root_rank=0)
# and DistributedGradientTape(tape).gradient(loss, [v.value for v in model.trainable_variables]).
# horovod.tensorflow.keras (DistributedOptimizer, BroadcastGlobalVariablesCallback) is not
# usable with Keras 3: the callback fails, and the optimizer runs but does not average.
#
# Needs: cmake >= 3.13, g++, the Python headers, and torch and/or tensorflow already
# installed in that environment. The build takes about 6 minutes on 2 cores.
# Safe to run again: if Horovod 0.28.1 already imports with the wanted frameworks, it exits 0.
set -euo pipefail

HVD_VERSION=0.28.1
HVD_SHA256=92a43f5a94c43907a56805bad15f19700c62ffc83b7ca483f9e104e229f67ef0
PY=${PYTHON:-python}
# A relative path (PYTHON=.venv/bin/python) must survive the cd into the build directory; the
# venv's own path is kept (not the interpreter it links to), so pip installs into that venv.
if [[ "$PY" == */* && "$PY" != /* ]]; then
    PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
fi
WANT_MPI=0
VERBOSE=0

die() { echo "install_horovod.sh: error: $*" >&2; exit 1; }
say() { echo "install_horovod.sh: $*"; }

for arg in "$@"; do
    case "$arg" in
        --mpi) WANT_MPI=1 ;;
        --verbose) VERBOSE=1 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (use --mpi, --verbose or --help)" ;;
    esac
done

command -v "$PY" >/dev/null 2>&1 || die "python '$PY' not found (set PYTHON=/path/to/python or activate the venv)"
PY=$(command -v "$PY")
BIN_DIR=$(dirname "$PY")

# --- which frameworks are there -------------------------------------------------------------
HAVE_TORCH=0
HAVE_TF=0
"$PY" -c 'import torch' >/dev/null 2>&1 && HAVE_TORCH=1
TF_CPP_MIN_LOG_LEVEL=3 "$PY" -c 'import tensorflow' >/dev/null 2>&1 && HAVE_TF=1
[ "$HAVE_TORCH$HAVE_TF" != "00" ] \
    || die "neither torch nor tensorflow imports in $PY: install at least one of them first"
FRAMEWORKS=""
[ "$HAVE_TORCH" = 1 ] && FRAMEWORKS="$FRAMEWORKS pytorch"
[ "$HAVE_TF" = 1 ] && FRAMEWORKS="$FRAMEWORKS tensorflow"
say "python: $PY; frameworks found:$FRAMEWORKS; MPI: $([ "$WANT_MPI" = 1 ] && echo yes || echo "no (gloo)")"

# --- already installed? ---------------------------------------------------------------------
already_installed() {
    TF_CPP_MIN_LOG_LEVEL=3 "$PY" - "$HVD_VERSION" "$HAVE_TORCH" "$HAVE_TF" "$WANT_MPI" <<'EOF' >/dev/null 2>&1
import importlib.metadata as md, sys
version, torch, tf, mpi = sys.argv[1], *(a == "1" for a in sys.argv[2:])
assert md.version("horovod") == version
mods = []
if torch:
    import horovod.torch; mods.append(horovod.torch)   # fails when the extension was not built
if tf:
    import horovod.tensorflow; mods.append(horovod.tensorflow)
assert all(m.gloo_built() for m in mods)
if mpi:
    assert all(m.mpi_built() for m in mods)
EOF
}
if already_installed; then
    say "Horovod $HVD_VERSION is already installed with$FRAMEWORKS; nothing to do."
    say "check it with: $BIN_DIR/horovodrun --check-build"
    exit 0
fi

# --- build tools ------------------------------------------------------------------------------
command -v cmake >/dev/null 2>&1 || die "cmake not found (apt-get install cmake, or pip install 'cmake>=3.13')"
command -v g++ >/dev/null 2>&1 || die "g++ not found (apt-get install g++)"
command -v make >/dev/null 2>&1 || die "make not found (apt-get install make)"
CMAKE_VERSION=$(cmake --version | head -n1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n1)
"$PY" - "$CMAKE_VERSION" <<'EOF' || die "cmake $CMAKE_VERSION is too old: Horovod needs >= 3.13"
import sys
sys.exit(tuple(int(x) for x in sys.argv[1].split(".")[:2]) < (3, 13))
EOF
"$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || die "Python.h not found for $PY (Debian: apt-get install python3-dev)"

if [ "$WANT_MPI" = 1 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "--mpi needs root (or sudo) to apt-get install Open MPI"
        SUDO=sudo
    fi
    say "installing Open MPI with apt-get"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q libopenmpi-dev openmpi-bin
    command -v mpicxx >/dev/null 2>&1 || die "mpicxx still not found after installing Open MPI"
fi

# setup.py imports setuptools and packaging; --no-build-isolation means they must be here.
"$PY" -c 'import setuptools, wheel, packaging' >/dev/null 2>&1 \
    || "$PY" -m pip install -q setuptools wheel packaging

# --- fetch and patch the source in a temporary directory ------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/horovod-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

say "downloading the horovod $HVD_VERSION source"
{ "$PY" -m pip download -q --no-deps --no-binary :all: "horovod==$HVD_VERSION" -d "$WORK" 2>&1 \
    | { grep -v "^WARNING: Location" || true; }; } || die "pip download of horovod==$HVD_VERSION failed"
SDIST="$WORK/horovod-$HVD_VERSION.tar.gz"
[ -f "$SDIST" ] || die "pip download did not produce $SDIST"
echo "$HVD_SHA256  $SDIST" | sha256sum -c --quiet - || die "sha256 of $SDIST does not match the 0.28.1 release"
tar -xzf "$SDIST"
SRC="$WORK/horovod-$HVD_VERSION"
[ -f "$SRC/setup.py" ] || die "unpacked source has no setup.py"

say "patching the source"
# Patches 1 and 2: C++14 -> C++17.
for f in "$SRC/CMakeLists.txt" "$SRC/horovod/torch/CMakeLists.txt"; do
    grep -qE 'set\(CMAKE_CXX_STANDARD 14\)' "$f" || die "patch: no 'set(CMAKE_CXX_STANDARD 14)' in $f (source changed?)"
    sed -i -E 's/set\(CMAKE_CXX_STANDARD 14\)/set(CMAKE_CXX_STANDARD 17)/' "$f"
    if grep -qE 'CMAKE_CXX_STANDARD 14' "$f" || ! grep -qE 'set\(CMAKE_CXX_STANDARD 17\)' "$f"; then
        die "patch: C++17 did not apply to $f"
    fi
done
# Patch 3: no xla_mpi_ops.cc in the TensorFlow sources.
TF_CMAKE="$SRC/horovod/tensorflow/CMakeLists.txt"
grep -qE '^list\(APPEND TF_SOURCES .*xla_mpi_ops\.cc"\)' "$TF_CMAKE" \
    || die "patch: xla_mpi_ops.cc is not listed in $TF_CMAKE as expected (source changed?)"
sed -i -E '/^list\(APPEND TF_SOURCES .*xla_mpi_ops\.cc"\)/d' "$TF_CMAKE"
if grep -q 'xla_mpi_ops\.cc' "$TF_CMAKE" || ! grep -q 'horovod/tensorflow/mpi_ops\.cc' "$TF_CMAKE"; then
    die "patch: removing xla_mpi_ops.cc from $TF_CMAKE did not apply"
fi

# --- build and install ------------------------------------------------------------------------
export HOROVOD_WITHOUT_MXNET=1
export HOROVOD_WITH_GLOO=1
if [ "$HAVE_TORCH" = 1 ]; then export HOROVOD_WITH_PYTORCH=1; unset HOROVOD_WITHOUT_PYTORCH;
else export HOROVOD_WITHOUT_PYTORCH=1; unset HOROVOD_WITH_PYTORCH; fi
if [ "$HAVE_TF" = 1 ]; then export HOROVOD_WITH_TENSORFLOW=1; unset HOROVOD_WITHOUT_TENSORFLOW;
else export HOROVOD_WITHOUT_TENSORFLOW=1; unset HOROVOD_WITH_TENSORFLOW; fi
# Without --mpi, MPI is still picked up if the system happens to have it (Horovod's default).
if [ "$WANT_MPI" = 1 ]; then export HOROVOD_WITH_MPI=1; unset HOROVOD_WITHOUT_MPI; fi
# setup.py runs `make -j8` unless MAKEFLAGS is set; each TensorFlow file needs 1-2 GB to
# compile, so match the cores instead.
export MAKEFLAGS="${MAKEFLAGS:--j$(nproc)}"

LOG="$WORK/build.log"
START=$(date +%s)
say "building and installing (about 6 minutes on 2 cores)..."
status=0
if [ "$VERBOSE" = 1 ]; then
    "$PY" -m pip install -v --no-build-isolation --no-cache-dir "$SRC" 2>&1 | tee "$LOG" || status=$?
else
    "$PY" -m pip install -v --no-build-isolation --no-cache-dir "$SRC" >"$LOG" 2>&1 || status=$?
fi
if [ "$status" != 0 ]; then
    KEPT="${TMPDIR:-/tmp}/horovod-$HVD_VERSION-build-$(date +%Y%m%d-%H%M%S).log"
    cp "$LOG" "$KEPT"
    grep -E 'error|Error' "$LOG" | grep -v '^WARNING: Location' | tail -n 20 >&2 || true
    die "pip install failed (exit $status); full log kept at $KEPT"
fi
say "built in $(( $(date +%s) - START )) s"

already_installed || die "installed, but Horovod $HVD_VERSION does not import with$FRAMEWORKS in $PY"
say "Horovod $HVD_VERSION installed with$FRAMEWORKS."
say "check the build with:  $BIN_DIR/horovodrun --check-build"
say "run 2 processes with:  $BIN_DIR/horovodrun -np 2 -H localhost:2 --gloo python your_script.py"
