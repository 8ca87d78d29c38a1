#!/usr/bin/env bash
# Test-only system packages: Debian's chromium, used by tests/test_report_browser.py to open the
# HTML report headless. Installed only when missing; the tests skip with a reason if it is absent.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium
fi
