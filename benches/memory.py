"""Peak memory of whole jobs through `sluice serve` (benches/memory.sh).

A Pinpoint import of two endpoint objects, and an Import/Export import of a
device holding one file: each process's peak resident set (ru_maxrss from
wait4), so the figure covers everything the process held, not a sample."""

import argparse
import os
import shutil
import subprocess
import tempfile
import time

import serving

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
sub = ap.add_subparsers(dest="job", required=True)
imp = sub.add_parser("import")
imp.add_argument("--label", required=True)
imp.add_argument("files", nargs="+")
ie = sub.add_parser("importexport")
ie.add_argument("--file", required=True)
args = ap.parse_args()


def peak_mib(proc):
    """Waits for `proc` and returns its peak resident set in MiB."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


class Server(serving.Server):
    def __init__(self, data):
        super().__init__(args.bin, data)
        self.data = data

    def stop(self):
        """Ends the server; returns its peak resident set in MiB."""
        self.proc.terminate()
        peak = peak_mib(self.proc)
        assert self.proc.returncode in (0, -15), "sluice serve ended with %s" % self.proc.returncode
        return peak


def sluice(data, *a):
    subprocess.run([args.bin, *a, "--data-dir", data], check=True, stdout=subprocess.DEVNULL)


work = tempfile.mkdtemp(prefix="sluice-memory-bench-")
data = os.path.join(work, "data")
try:
    if args.job == "import":
        sluice(data, "bucket", "mb", "s3://bench")
        size = 0
        for f in args.files:
            sluice(data, "bucket", "put", f, "s3://bench/in/")
            size += os.path.getsize(f)
        server = Server(data)
        pp = server.client("pinpoint")
        app = pp.create_app(CreateApplicationRequest={"Name": "bench"})["ApplicationResponse"]["Id"]
        t0 = time.time()
        job = pp.create_import_job(ApplicationId=app, ImportJobRequest={
            "Format": "CSV", "S3Url": "s3://bench/in/", "RegisterEndpoints": True,
            "RoleArn": "arn:aws:iam::123456789012:role/Import"})["ImportJobResponse"]["Id"]
        while True:
            j = pp.get_import_job(ApplicationId=app, JobId=job)["ImportJobResponse"]
            if j["JobStatus"] in ("COMPLETED", "FAILED"):
                break
            time.sleep(0.5)
        took = time.time() - t0
        peak = server.stop()
        assert j["JobStatus"] == "COMPLETED", j
        print("pinpoint import, %s: %d objects, %.0f MiB: %s in %.1f s; processed %d, "
              "failures %d; peak RSS of sluice serve %.0f MiB" % (
                  args.label, len(args.files), size / 2**20, j["JobStatus"], took,
                  j["TotalProcessed"], j["TotalFailures"], peak))
    else:
        device = os.path.join(work, "device")
        os.makedirs(device)
        whole = os.path.join(device, "whole.csv")
        try:
            os.link(args.file, whole)  # no copy of a 1 GiB file when it can be helped
        except OSError:
            shutil.copyfile(args.file, whole)
        size = os.path.getsize(args.file)
        sluice(data, "bucket", "mb", "s3://bench")
        server = Server(data)
        ie = server.client("importexport")
        manifest = ("manifestVersion: 2.0\naccessKeyId: %s\ndeviceId: bench\neraseDevice: no\n"
                    "bucket: bench\nprefix: dev\nreturnAddress:\n  name: Bench\n"
                    "  street1: 1 Main St\n  city: Anytown\n  stateOrProvince: WA\n"
                    "  postalCode: 91011\n  phoneNumber: +1 206 555 1111\n  country: US\n"
                    % server.key)
        r = ie.create_job(JobType="Import", Manifest=manifest, ValidateOnly=False)
        with open(os.path.join(device, "SIGNATURE"), "w") as f:
            f.write(r["SignatureFileContents"])
        t0 = time.time()
        run = subprocess.Popen([args.bin, "importexport", "run", r["JobId"], "--device", device,
                                "--data-dir", data], stdout=subprocess.DEVNULL)
        peak = peak_mib(run)
        took = time.time() - t0
        assert run.returncode == 0, "sluice importexport run ended with %s" % run.returncode
        status = ie.get_status(JobId=r["JobId"])
        server.stop()
        assert status["ProgressCode"] == "Complete", status
        print("import/export import of one %.0f MiB file: %.1f s; peak RSS of "
              "sluice importexport run %.0f MiB" % (size / 2**20, took, peak))
finally:
    shutil.rmtree(work, ignore_errors=True)
