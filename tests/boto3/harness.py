"""What the end-to-end tests share: the sluice binary, a `sluice serve` on a
free loopback port, and a moto S3 server for the S3-compatible bucket path."""

import configparser
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import boto3
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def sluice_bin():
    if os.environ.get("SLUICE_BIN"):
        return os.environ["SLUICE_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    for profile in ("release", "debug"):
        p = os.path.join(target, profile, "sluice")
        if os.path.exists(p):
            return p
    raise SystemExit("no sluice binary: build it or set SLUICE_BIN")


class Server:
    """`sluice serve` on a free loopback port, with a fresh data directory."""

    def __init__(self, *extra, env=None, keys=None, dir=None):
        """`keys`: access key id -> secret, accepted instead of a generated
        key (the first is the one `client` signs with unless told). `dir`:
        an earlier server's folder, to start again on its data."""
        self.dir = dir or tempfile.mkdtemp(prefix="sluice-boto3-")
        if keys:
            path = os.path.join(self.dir, "keys")
            with open(path, "w") as f:
                for n, (k, v) in enumerate(keys.items()):
                    # A value is a secret, or (secret, account id).
                    secret, account = v if isinstance(v, tuple) else (v, None)
                    f.write("[p%d]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                            % (n, k, secret))
                    if account:
                        f.write("sluice_account_id = %s\n" % account)
            extra = ("--credentials", path) + extra
        # With SLUICE_BOTO3_PG (a PostgreSQL URL whose user may create
        # databases), the store is a new database of that server, kept in
        # the folder for a restart, instead of the SQLite file.
        store_file = os.path.join(self.dir, "store-url")
        self.pg_database = None
        if os.environ.get("SLUICE_BOTO3_PG"):
            if not os.path.exists(store_file):
                with open(store_file, "w") as f:
                    f.write(new_pg_database(os.environ["SLUICE_BOTO3_PG"]))
            with open(store_file) as f:
                self.store_url = f.read()
            extra = ("--store", self.store_url) + extra
        # The server's log goes to a file: a pipe nobody reads could fill.
        self.log = open(os.path.join(self.dir, "serve.log"), "a+")
        self.proc = subprocess.Popen(
            [sluice_bin(), "serve", "--listen", "127.0.0.1:0",
             "--data-dir", os.path.join(self.dir, "data"), "--threads", "2", *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
            env=dict(os.environ, **(env or {})))
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            self.log.seek(0)
            raise RuntimeError("sluice serve did not start: %r %s" % (line, self.log.read()))
        self.url = line.split("listening on ", 1)[1].strip()
        self.data = os.path.join(self.dir, "data")
        if keys:
            self.key_id, self.secret = next(iter(keys.items()))
            if isinstance(self.secret, tuple):
                self.secret = self.secret[0]
        else:
            creds = configparser.ConfigParser()
            creds.read(os.path.join(self.data, "credentials"))
            self.key_id = creds["default"]["aws_access_key_id"]
            self.secret = creds["default"]["aws_secret_access_key"]

    def store_args(self):
        """What names this server's store to the sluice command."""
        store = getattr(self, "store_url", None)
        return ["--data-dir", self.data] + (["--store", store] if store else [])

    def client(self, secret=None, service="customer-profiles", key_id=None, **config):
        return boto3.client(
            service, endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id=key_id or self.key_id,
            aws_secret_access_key=secret or self.secret,
            config=Config(retries={"max_attempts": 1}, **config))

    def kill(self):
        """kill -9: no shutdown at all; the folder stays for a restart."""
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.log.close()

    def stop(self):
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = "killed"
        self.proc.stdout.close()
        self.log.seek(0)
        log = self.log.read()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.log_text = log
        if os.environ.get("SLUICE_BOTO3_PG") and getattr(self, "store_url", None):
            drop_pg_database(os.environ["SLUICE_BOTO3_PG"], self.store_url)
        # A clean stop on SIGTERM, and nothing went wrong inside.
        assert code == 0, "sluice serve ended with %s:\n%s" % (code, log)
        assert "internal error" not in log, log



def new_pg_database(admin):
    """A new, empty database on the PostgreSQL server of `admin`; its URL."""
    name = "sluice_boto3_%d_%d" % (os.getpid(), time.monotonic_ns())
    subprocess.run(["psql", admin, "-q", "-c", "CREATE DATABASE " + name], check=True)
    base = admin.split("?", 1)[0].rsplit("/", 1)[0]
    return "%s/%s" % (base, name)


def drop_pg_database(admin, url):
    name = url.rsplit("/", 1)[1]
    subprocess.run(["psql", admin, "-q", "-c", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name],
                   check=False)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """moto's S3 server (`moto_server` from PyPI) on a free loopback port: a
    real S3-compatible endpoint, not a mock of ours."""

    KEY_ID, SECRET = "moto-key", "moto-secret"

    def __init__(self):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = tempfile.TemporaryFile(mode="w+")
        exe = os.path.join(os.path.dirname(os.path.realpath(__import__("sys").executable)),
                           "moto_server")
        if not os.path.exists(exe):
            exe = shutil.which("moto_server") or "moto_server"
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=2).read()
                break
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.log.seek(0)
                    raise RuntimeError("moto_server did not start: " + self.log.read())
                time.sleep(0.2)

    def env(self):
        """How `sluice` is told to keep its buckets here."""
        return {"SLUICE_S3_ENDPOINT": self.url, "SLUICE_S3_REGION": "us-east-1",
                "SLUICE_S3_ACCESS_KEY_ID": self.KEY_ID,
                "SLUICE_S3_SECRET_ACCESS_KEY": self.SECRET}

    def s3(self):
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.KEY_ID,
                            aws_secret_access_key=self.SECRET)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
