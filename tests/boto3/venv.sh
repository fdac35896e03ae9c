# Sourced: makes (once) the virtualenv with the pinned AWS clients of
# tests/boto3/requirements.txt and sets $VENV to it.
VENV="${SLUICE_VENV:-$HOME/.cache/sluice-boto3-venv}"
_req=tests/boto3/requirements.txt
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$_req" "$VENV/requirements.txt"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$_req"
  cp "$_req" "$VENV/requirements.txt"
fi
