"""`sluice serve` for the benchmark scripts: started on a free port over a
data directory, with boto3 clients signed with the credentials it wrote."""

import configparser
import os
import subprocess

import boto3


class Server:
    def __init__(self, bin, data, *extra, stderr=None):
        self.proc = subprocess.Popen(
            [bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", data, *extra],
            stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.url = self.proc.stdout.readline().split("listening on ", 1)[1].strip()
        creds = configparser.ConfigParser()
        creds.read(os.path.join(data, "credentials"))
        self.key = creds["default"]["aws_access_key_id"]
        self.secret = creds["default"]["aws_secret_access_key"]

    def client(self, service):
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret)

    def stop(self, timeout=None):
        """Ends the server; returns its exit code."""
        self.proc.terminate()
        return self.proc.wait(timeout=timeout)
