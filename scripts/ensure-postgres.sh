#!/usr/bin/env bash
# Make sure a PostgreSQL server (initdb, pg_ctl) is installed; installs Debian's when not.
# The tests start and stop their own throw-away instance (tests/support/postgres.py).
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "PostgreSQL is not installed and this is not root: install postgresql first" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
