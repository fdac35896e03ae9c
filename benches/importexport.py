"""Times an Import/Export round trip through `sluice serve`
(benches/importexport.sh)."""

import argparse
import filecmp
import os
import shutil
import subprocess
import tempfile
import time

from serving import Server

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--file", required=True)
ap.add_argument("--files", type=int, required=True)
args = ap.parse_args()

work = tempfile.mkdtemp(prefix="sluice-ie-bench-")
data, device, fresh = (os.path.join(work, d) for d in ("data", "device", "fresh"))
os.makedirs(device)
os.makedirs(fresh)

# The device: the file cut on line boundaries into --files parts, and whole.
size = os.path.getsize(args.file)
part_bytes = max(1, size // args.files)
with open(args.file, "rb") as src:
    n = 0
    while True:
        chunk = src.read(part_bytes)
        if not chunk:
            break
        chunk += src.readline()
        d = os.path.join(device, "part-%02d" % (n % 10))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "part-%05d.csv" % n), "wb") as f:
            f.write(chunk)
        n += 1
shutil.copyfile(args.file, os.path.join(device, "whole.csv"))
total = 2 * size


def sluice(*a):
    subprocess.run([args.bin, *a, "--data-dir", data], check=True, stdout=subprocess.DEVNULL)


sluice("bucket", "mb", "s3://bench")
server = Server(args.bin, data)
try:
    key = server.key
    ie = server.client("importexport")
    address = ("returnAddress:\n  name: Bench\n  street1: 1 Main St\n  city: Anytown\n"
               "  stateOrProvince: WA\n  postalCode: 91011\n  phoneNumber: +1 206 555 1111\n"
               "  country: US\n")
    common = "manifestVersion: 2.0\naccessKeyId: %s\ndeviceId: bench\n" % key
    runs = []
    for kind, manifest, dev in [
        ("Import", common + "eraseDevice: no\nbucket: bench\nprefix: dev\n" + address, device),
        ("Export", common + "fileSystem: EXT4\noperations:\n  - exportBucket: bench\n"
         "    prefix: dev/\n    targetDirectory: /\n" + address, fresh),
    ]:
        r = ie.create_job(JobType=kind, Manifest=manifest, ValidateOnly=False)
        with open(os.path.join(dev, "SIGNATURE"), "w") as f:
            f.write(r["SignatureFileContents"])
        t0 = time.time()
        sluice("importexport", "run", r["JobId"], "--device", dev)
        secs = time.time() - t0
        status = ie.get_status(JobId=r["JobId"])
        assert status["ProgressCode"] == "Complete", status
        runs.append((kind, secs))
finally:
    code = server.stop()
assert code == 0, "sluice serve ended with %s" % code

# The export gives the device back, byte for byte.
def files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


os.remove(os.path.join(device, "SIGNATURE"))
os.remove(os.path.join(fresh, "SIGNATURE"))
exported = os.path.join(fresh, "dev")
assert files(device) == files(exported), "the export has other files than the device"
for rel in files(device):
    assert filecmp.cmp(os.path.join(device, rel), os.path.join(exported, rel), shallow=False), rel
print("device: %d files + whole.csv, %.1f MB" % (n, total / 1e6))
for kind, secs in runs:
    print("%s: %.1f s, %.0f MB/s" % (kind, secs, total / 1e6 / secs))
print("export == device: byte for byte")
shutil.rmtree(work, ignore_errors=True)
