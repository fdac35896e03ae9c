# Sourced: makes (once) a virtualenv with pinned Python packages and sets
# $VENV to it. By default the AWS clients of tests/boto3/requirements.txt in
# $SLUICE_VENV (or ~/.cache/sluice-boto3-venv); a script that needs other
# packages sets VENV_DIR and VENV_REQUIREMENTS first (benches/store.sh:
# DuckDB, the peer it runs).
VENV="${VENV_DIR:-${SLUICE_VENV:-$HOME/.cache/sluice-boto3-venv}}"
_req=${VENV_REQUIREMENTS:-tests/boto3/requirements.txt}
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$_req" "$VENV/requirements.txt"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$_req"
  cp "$_req" "$VENV/requirements.txt"
fi
