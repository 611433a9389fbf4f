# Sourced by the scripts here: use the active virtualenv, or create and use ./.venv.
# Python 3.11 or newer is required.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
  PY=${PYTHON:-python3}
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "cdm-exporter needs Python 3.11 or newer ($PY is $("$PY" -V 2>&1))" >&2; exit 1; }
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
