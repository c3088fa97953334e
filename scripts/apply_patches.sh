#!/usr/bin/env bash
# Apply the FairBatching patches (patches/*.patch) to an installed sglang==0.5.23.
#
#   scripts/apply_patches.sh [--python PATH] [--install] [--check | --revert] [--site DIR]
#
#   --python PATH  interpreter whose site-packages hold sglang (default: the active venv's
#                  python, else python3 on PATH)
#   --install      first `pip install sglang==0.5.23` with its full (CUDA) dependencies; for a
#                  CPU test install use scripts/install_sglang_cpu.sh instead
#   --check        report the state of each file; exit 0 if all patched, 1 if none, 2 otherwise
#   --revert       restore the stock files (reverse patches; checksums verified)
#   --site DIR     patch the sglang tree under DIR (DIR/sglang/...) instead of the interpreter's;
#                  the version check is skipped, the checksums are not (used by the tests)
#
# Every file is checked against patches/original.sha256 (stock 0.5.23) and patched.sha256
# before anything is written: a file matching neither (another version, local edits) stops the
# script with nothing changed. Applying twice is a no-op.
#
# All or nothing: the patches are applied to copies in a staging directory and checked there;
# only then is each file replaced (copied next to its target, then renamed over it). If any
# replacement fails, the files already replaced are put back and the script exits 1 with the
# tree as it was.
set -euo pipefail

SGLANG_VERSION="0.5.23"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PATCH_DIR="$ROOT/patches"
PY=""
MODE="apply"
INSTALL=0
SITE=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --python) PY="$2"; shift 2 ;;
    --install) INSTALL=1; shift ;;
    --check) MODE="check"; shift ;;
    --revert) MODE="revert"; shift ;;
    --site) SITE="$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "apply_patches: unknown argument $1" >&2; exit 64 ;;
  esac
done

die() { echo "apply_patches: $*" >&2; exit 1; }
command -v patch >/dev/null || die "the 'patch' program is required (apt-get install patch)"
command -v sha256sum >/dev/null || die "sha256sum is required (coreutils)"

if [[ -z "$SITE" ]]; then
  if [[ -z "$PY" ]]; then
    if [[ -n "${VIRTUAL_ENV:-}" ]]; then PY="$VIRTUAL_ENV/bin/python"; else PY="$(command -v python3)"; fi
  fi
  [[ -x "$PY" ]] || die "python not found: $PY"
  echo "apply_patches: python $PY"
  if [[ $INSTALL -eq 1 ]]; then
    echo "apply_patches: installing sglang==$SGLANG_VERSION (full dependencies)"
    "$PY" -m pip install "sglang==$SGLANG_VERSION"
  fi
  # `python -c` puts the current directory first on sys.path: run from a directory that
  # contains a sglang/ folder, it would find (and this script would patch or check) that tree
  # instead of the interpreter's. NOCWD drops it before any lookup.
  NOCWD='import sys; sys.path[:] = [p for p in sys.path if p not in ("", ".")]'
  version="$("$PY" -c "$NOCWD"'
import importlib.metadata as m; print(m.version("sglang"))' 2>/dev/null)" \
    || die "sglang is not installed for $PY (use --install, or scripts/install_sglang_cpu.sh)"
  [[ "$version" == "$SGLANG_VERSION" ]] \
    || die "installed sglang is $version; these patches are for sglang==$SGLANG_VERSION only. Refusing."
  # find_spec does not import sglang (importing it pulls torch and takes seconds).
  SITE="$("$PY" -c "$NOCWD"'
import importlib.util, os; print(os.path.dirname(os.path.dirname(importlib.util.find_spec("sglang").origin)))')" \
    || die "cannot locate the sglang package of $PY"
fi
[[ -d "$SITE/sglang" ]] || die "no sglang package under $SITE"
echo "apply_patches: sglang tree $SITE/sglang"

# State of each file: stock, patched, or other.
declare -A STATE
n_stock=0; n_patched=0; n_other=0
while read -r sum path; do
  actual="$(sha256sum "$SITE/$path" | cut -d' ' -f1)"
  patched_sum="$(grep " $path\$" "$PATCH_DIR/patched.sha256" | cut -d' ' -f1)"
  if [[ "$actual" == "$sum" ]]; then STATE[$path]=stock; n_stock=$((n_stock + 1))
  elif [[ "$actual" == "$patched_sum" ]]; then STATE[$path]=patched; n_patched=$((n_patched + 1))
  else STATE[$path]=other; n_other=$((n_other + 1)); fi
  echo "  ${STATE[$path]}: $path"
done < "$PATCH_DIR/original.sha256"

if [[ $n_other -gt 0 ]]; then
  die "$n_other file(s) match neither stock sglang==$SGLANG_VERSION nor the patched version (checksums in patches/*.sha256). Nothing changed."
fi

case "$MODE" in
  check)
    if [[ $n_stock -eq 0 ]]; then echo "apply_patches: all patches applied"; exit 0; fi
    if [[ $n_patched -eq 0 ]]; then echo "apply_patches: not applied (stock sglang)"; exit 1; fi
    echo "apply_patches: partially applied ($n_patched patched, $n_stock stock)"; exit 2 ;;
  apply)
    if [[ $n_stock -eq 0 ]]; then echo "apply_patches: already applied, nothing to do"; exit 0; fi
    from=stock; verb=applying; patch_flags=(--forward) ;;
  revert)
    if [[ $n_patched -eq 0 ]]; then echo "apply_patches: nothing to revert (stock sglang)"; exit 0; fi
    from=patched; verb=reverting; patch_flags=(--reverse) ;;
esac
want="$PATCH_DIR/patched.sha256"; [[ "$MODE" == "revert" ]] && want="$PATCH_DIR/original.sha256"

# 1. Stage: patch copies of the files that change; nothing under $SITE is touched yet.
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/fairbatching-patch.XXXXXX")"
TMP_SUFFIX=".fairbatching-new"
COMMITTED=()
cleanup() {
  for t in "${!STATE[@]}"; do rm -f "$SITE/$t$TMP_SUFFIX" 2>/dev/null || true; done
  rm -rf "$STAGE"
}
trap cleanup EXIT
CHANGED=()
for p in "$PATCH_DIR"/*.patch; do
  target="$(sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$p" | head -1)"
  [[ "${STATE[$target]}" == "$from" ]] || continue
  echo "apply_patches: $verb $(basename "$p") -> $target"
  mkdir -p "$STAGE/new/$(dirname "$target")" "$STAGE/old/$(dirname "$target")"
  cp -p "$SITE/$target" "$STAGE/new/$target"
  cp -p "$SITE/$target" "$STAGE/old/$target"
  patch --quiet "${patch_flags[@]}" --no-backup-if-mismatch -p1 -d "$STAGE/new" < "$p" \
    || die "$(basename "$p") does not apply to $target; nothing changed"
  sum="$(sha256sum "$STAGE/new/$target" | cut -d' ' -f1)"
  grep -qxF "$sum  $target" "$want" || die "$target: checksum mismatch after $MODE (staged); nothing changed"
  CHANGED+=("$target")
done

# 2. Commit: each file is copied next to its target and renamed over it (a rename within one
# directory is atomic: a reader never sees half a file). On any failure, roll back.
put() {  # put SRC TARGET: replace $SITE/TARGET with SRC
  cp -p -T "$1" "$SITE/$2$TMP_SUFFIX" && mv -f -T "$SITE/$2$TMP_SUFFIX" "$SITE/$2"
}
rollback() {
  local t failed=0
  for t in "${COMMITTED[@]}"; do put "$STAGE/old/$t" "$t" || failed=1; done
  if [[ $failed -eq 0 ]]; then
    die "could not write $1; the ${#COMMITTED[@]} file(s) already replaced were restored, nothing changed"
  fi
  die "could not write $1, and restoring the files already replaced failed too: run --check"
}
for t in "${CHANGED[@]}"; do
  put "$STAGE/new/$t" "$t" || rollback "$SITE/$t"
  COMMITTED+=("$t")
done

# Verify the result against the stored checksums.
(cd "$SITE" && sha256sum --quiet -c "$want") || die "checksum mismatch after $MODE"
echo "apply_patches: $MODE done, checksums verified"
