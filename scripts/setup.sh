#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the package into it.
#   scripts/setup.sh            # .venv with the package and its dev tools
#   scripts/setup.sh --sglang   # plus the pinned sglang==0.5.23 for CPU tests (patched)
#   scripts/setup.sh --cluster  # plus the smg router (extra `cluster`) for the router tests
# VENV=path overrides the location; PYTHON=python3.11 picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
want_sglang=0
extras="dev"
for arg in "$@"; do
  case "$arg" in
    --sglang) want_sglang=1 ;;
    --cluster) extras="dev,cluster" ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 11))'; then
      echo "$candidate"; return 0
    fi
  done
  echo "setup.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  py="$(pick_python)"
  echo "==> creating $VENV with $py"
  "$py" -m venv "$VENV"
fi
echo "==> installing fairbatching-sglang[$extras] into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$extras]"

if [ "$want_sglang" = 1 ]; then
  echo "==> installing the pinned sglang for CPU tests"
  bash scripts/install_sglang_cpu.sh "$VENV"
fi
echo "==> ready: $VENV ($("$VENV/bin/python" --version))"
