#!/usr/bin/env bash
# Make sure Debian's chromium is installed: the browser tests of the web console
# (tests/browser) drive it headless through Playwright, with no browser download of
# Playwright's own. Installs the package when the binary is missing; nothing else.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is not installed and this is not root: install Debian's chromium first" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
