# Sourced: starts a throwaway PostgreSQL cluster for the tests and exports
# SLUICE_TEST_PG (its URL, as a user that may create databases) and
# pg_cluster_stop (a function that stops it and removes its files).
#
#   . tests/pg/cluster.sh && trap pg_cluster_stop EXIT
#
# Installs Debian's PostgreSQL 15 when its server is missing. initdb refuses
# to run as root, so the cluster belongs to the `postgres` user (made by the
# package) when we are root. It listens on 127.0.0.1 on a free port, with
# trust authentication, fsync off (a test cluster holds nothing to keep), and
# its socket in its own directory. PG_OPTS adds server settings
# ("-c shared_buffers=2GB …", as benches/distributed.sh does).
#
# TLS is on (PG_SSL=0 turns it off): a throwaway CA and a server
# certificate for 127.0.0.1 and localhost, made with openssl (installed
# when missing); SLUICE_TEST_PG_CA is the CA's file, for the tests that
# connect with sslmode=verify-full.

_pg_bin() {
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return
    fi
  done
}

PG_BIN=$(_pg_bin)
if [ -z "$PG_BIN" ]; then
  echo "installing PostgreSQL (Debian package postgresql)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  PG_BIN=$(_pg_bin)
fi
if [ -z "$PG_BIN" ]; then
  echo "no PostgreSQL server binaries (initdb, pg_ctl) after installing" >&2
  return 1 2>/dev/null || exit 1
fi

PG_DIR=$(mktemp -d /tmp/sluice-pg.XXXXXX)
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ "$(id -u)" = 0 ]; then
  chown postgres "$PG_DIR"
  _pg_as() { runuser -u postgres -- "$@"; }
else
  _pg_as() { "$@"; }
fi
_pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --encoding=UTF8 \
  --no-sync >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1 2>/dev/null || exit 1; }
PG_TLS_OPTS=""
unset SLUICE_TEST_PG_CA
if [ "${PG_SSL:-1}" != 0 ]; then
  if ! command -v openssl >/dev/null; then
    echo "installing openssl (Debian package openssl), for the cluster's certificate" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
  fi
  _tls="$PG_DIR/tls"
  mkdir -p "$_tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sluice test CA" \
    -keyout "$_tls/ca.key" -out "$_tls/ca.crt" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$_tls/server.key" -out "$_tls/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$_tls/san.ext"
  openssl x509 -req -in "$_tls/server.csr" -CA "$_tls/ca.crt" -CAkey "$_tls/ca.key" \
    -CAcreateserial -days 2 -extfile "$_tls/san.ext" -out "$_tls/server.crt" >/dev/null 2>&1
  chmod 600 "$_tls/server.key"
  [ "$(id -u)" = 0 ] && chown -R postgres "$_tls"
  PG_TLS_OPTS="-c ssl=on -c ssl_cert_file=$_tls/server.crt -c ssl_key_file=$_tls/server.key"
  export SLUICE_TEST_PG_CA="$_tls/ca.crt"
fi
_pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w start \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 $PG_TLS_OPTS ${PG_OPTS:-}" \
  >/dev/null || { cat "$PG_DIR/server.log" >&2; return 1 2>/dev/null || exit 1; }
export SLUICE_TEST_PG="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') at $SLUICE_TEST_PG ($PG_DIR)" >&2

pg_cluster_stop() {
  _pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
