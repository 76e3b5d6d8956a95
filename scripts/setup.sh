#!/usr/bin/env bash
# One-command set-up for a fresh x86_64 Linux machine with Python 3.11:
#   bash scripts/setup.sh
# Creates .venv, installs gannas with its test extras (torch 2.14.1 / torchvision 0.29.1 pinned),
# and, when run as root (or with sudo), the system packages the end-to-end tests use:
# Debian's chromium (headless browser tests) and docker-compose (static compose validation).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || {
  echo "error: gannas needs Python 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"

if [ -f scripts/install_browser.sh ]; then
  bash scripts/install_browser.sh || echo "warning: browser tests will be skipped (could not install chromium)" >&2
fi
if ! command -v docker-compose >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  { $SUDO apt-get install -y --no-install-recommends docker-compose >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y --no-install-recommends docker-compose >/dev/null 2>&1; }; } \
    || echo "warning: docker-compose not installed; its static check will be skipped" >&2
fi
echo "gannas installed in .venv; run the tests with: .venv/bin/python -m pytest"
