#!/usr/bin/env bash
# Install the pinned, patched SGLang into an existing venv for CPU-only tests (no GPU, no CUDA).
#
#   scripts/install_sglang_cpu.sh VENV_DIR
#
# What it does (idempotent; each step says what it does, pip skips what is already there):
#   1. torch==2.13.0 CPU build (never a CUDA torch: `pip install sglang` would pull 2.14.1+CUDA
#      and ~1.6 GB of kernels);
#   2. sglang==0.5.23 with --no-deps;
#   3. the packages sglang's scheduler/server imports need, pinned to versions verified together
#      with the project's own dependencies (numpy, pandas, pyarrow, matplotlib, typer, rich,
#      httpx, hypothesis, pytest);
#   3b. the packages the HTTP server and its tokenizer manager import (the emulated server runs
#      the whole process tree on CPU: DESIGN.md section 6), also --no-deps;
#   4. the torchvision stub from scripts/cpu_stubs (PyPI's torchvision fails beside CPU torch);
#   5. scripts/apply_patches.sh on that venv.
# Serving a model on CPU is still impossible (no CPU sgl-kernel); the server runs here only with
# the emulated device (fairbatching_sglang/emulator, `fairbatching emulate serve`).
set -euo pipefail

VENV="${1:?usage: $0 VENV_DIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$VENV/bin/python"
[[ -x "$PY" ]] || { echo "install_sglang_cpu: no python at $PY (create the venv first)" >&2; exit 1; }

# Pins: sentencepiece, tokenizers and python-dateutil follow sglang 0.5.23's own requirements;
# the rest are the versions this set was verified with.
IMPORT_DEPS=(
  "aiohttp==3.14.5" "apache-tvm-ffi==0.1.11" "compressed-tensors==0.18.0" "dill==0.4.1"
  "einops==0.8.2" "fastapi==0.165.0" "gguf==0.19.0" "ipython==9.18.1" "msgspec==0.22.0"
  "openai==2.8.0" "orjson==3.13.0" "packaging==26.3" "partial-json-parser==0.2.1.1.post7"
  "pillow==13.0.0" "prometheus-client==0.26.0" "psutil==7.2.2" "pybase64==1.5.1"
  "pydantic==2.14.4" "python-dateutil==2.9.0.post0" "pyzmq==27.3.0" "requests==2.34.2"
  "sentencepiece==0.2.1" "setproctitle==1.3.8" "starlette==1.10.0" "tokenizers==0.23.2"
  "tqdm==4.70.1" "transformers==5.19.0" "triton==3.9.0" "uvicorn==0.54.0"
)

# The server's own imports (uvloop, multipart forms, jsonschema for tool calls, xgrammar for the
# grammar backend it builds at start-up, soundfile+cffi for transformers.AutoProcessor): --no-deps
# so none of them can pull a CUDA torch.
SERVER_DEPS=(
  "attrs==26.1.0" "cffi==2.1.1" "jsonschema==4.26.0" "jsonschema-specifications==2025.9.1"
  "pycparser==3.12" "python-multipart==0.0.34" "referencing==0.37.0" "rpds-py==2026.9.1"
  "soundfile==0.14.0" "uvloop==0.23.0" "xgrammar==0.2.9"
)

pip_q() { "$PY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }

echo "install_sglang_cpu: [1/5] torch==2.13.0 (CPU build)"
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") and torch.version.cuda is None else 1)' 2>/dev/null; then
  echo "  already installed"
else
  # The machine-local wheel index (pip's find-links) serves the CPU build as plain torch==2.13.0.
  pip_q "torch==2.13.0"
  "$PY" -c 'import torch, sys; print("  torch", torch.__version__, "cuda", torch.version.cuda); sys.exit(0 if torch.version.cuda is None else 1)' \
    || { echo "install_sglang_cpu: a CUDA torch got installed; refusing to go on" >&2; exit 1; }
fi

echo "install_sglang_cpu: [2/5] sglang==0.5.23 --no-deps"
pip_q --no-deps "sglang==0.5.23"

echo "install_sglang_cpu: [3/5] import-time packages (${#IMPORT_DEPS[@]} pinned)"
pip_q "${IMPORT_DEPS[@]}"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)' \
  || { echo "install_sglang_cpu: a dependency replaced the CPU torch; refusing" >&2; exit 1; }

echo "install_sglang_cpu: [3b/5] server packages (${#SERVER_DEPS[@]} pinned, --no-deps)"
pip_q --no-deps "${SERVER_DEPS[@]}"

echo "install_sglang_cpu: [4/5] torchvision stub"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if "$PY" -c 'import importlib.metadata as m; m.version("torchvision")' 2>/dev/null; then
  echo "  a real torchvision distribution is installed; leaving it (stub not copied)"
else
  rm -rf "$SITE/torchvision"
  cp -r "$ROOT/scripts/cpu_stubs/torchvision" "$SITE/torchvision"
  echo "  copied to $SITE/torchvision"
fi

echo "install_sglang_cpu: [5/5] FairBatching patches"
"$ROOT/scripts/apply_patches.sh" --python "$PY"

HF_HUB_OFFLINE=1 "$PY" -W ignore -c 'import sglang.srt.managers.scheduler, sglang.srt.entrypoints.http_server, numpy, pandas, pyarrow, matplotlib, typer, rich, httpx, hypothesis, pytest; print("install_sglang_cpu: imports OK")'
