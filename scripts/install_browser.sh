#!/usr/bin/env bash
# Installs what the headless-browser report tests need: Debian's chromium and the Playwright
# Python driver. We never run `playwright install`: it downloads its own browser build, which
# cannot be fetched here; the tests launch /usr/bin/chromium through `executable_path` instead.
#
# Usage: scripts/install_browser.sh [PYTHON]   (default: .venv/bin/python, else python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${1:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then python="$here/.venv/bin/python"; else python="python3"; fi
fi

sudo_cmd=()
if [[ "$(id -u)" != "0" ]]; then sudo_cmd=(sudo -n); fi  # -n: never wait for a password in CI

if ! command -v chromium >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: chromium is not installed and apt-get is not available; install chromium and" \
      "set GANNAS_CHROMIUM=/path/to/chromium" >&2
    exit 1
  fi
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends \
    chromium fonts-dejavu-core
fi

"$python" -m pip install --quiet "playwright>=1.40"

chromium --version
"$python" -c "import playwright, importlib.metadata as m; print('playwright', m.version('playwright'))"
