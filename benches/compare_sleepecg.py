#!/usr/bin/env python3
"""Detection throughput of ecg-triage against sleepecg, side by side, in one run.

sleepecg (PyPI, C backend) is the fastest published open detector we
measured. Both detectors get the same MIT-BIH records, already loaded in
memory; only detection is timed. sleepecg sees the first lead only (its API
is single-lead); ecg-triage is timed twice: on the first lead only (like for
like) and on both leads (as `detect` runs it). The detectors take turns,
five passes each per round, five rounds (COMPARE_ROUNDS), and each keeps its
best pass: on a shared machine whose load comes and goes, timing one
detector after the other would hand the quiet moments to whichever ran then.

Usage: benches/compare_sleepecg.py [DATA_DIR/mitdb]
Needs: python3 with numpy and sleepecg (the script installs them into
./.venv-bench when missing), and cargo.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ensure_deps():
    try:
        import numpy  # noqa: F401
        import sleepecg  # noqa: F401
        return
    except ImportError:
        pass
    venv = ROOT / ".venv-bench"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(venv)])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", "numpy", "sleepecg"])
    if os.environ.get("COMPARE_SLEEPECG_CHILD"):
        sys.exit("sleepecg still not importable in " + str(venv))
    os.environ["COMPARE_SLEEPECG_CHILD"] = "1"
    os.execv(str(py), [str(py)] + sys.argv)


def read_format_212_first_lead(record):
    """First signal of a two-signal MIT-BIH format-212 record, in mV."""
    import numpy as np

    header = Path(str(record) + ".hea").read_text().splitlines()
    fields = header[0].split()
    fs = float(fields[2].split("/")[0])
    sig = header[1].split()
    assert sig[1].startswith("212"), f"{record}: only format 212 is read here"
    gain_field = sig[2].split("/")[0]
    gain = float(gain_field.split("(")[0])
    baseline = int(gain_field.split("(")[1].rstrip(")")) if "(" in gain_field else int(sig[4])
    raw = np.fromfile(str(record) + ".dat", dtype=np.uint8)
    raw = raw[: len(raw) // 3 * 3].reshape(-1, 3).astype(np.int32)
    first = raw[:, 0] | ((raw[:, 1] & 0x0F) << 8)
    first = np.where(first > 2047, first - 4096, first)
    return fs, (first - baseline) / gain


def main():
    ensure_deps()
    import sleepecg

    mitdb = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "mitdb"
    records = sorted(str(p.with_suffix("")) for p in mitdb.glob("*.hea"))
    if not records:
        sys.exit(f"no records in {mitdb}")
    loaded = [read_format_212_first_lead(r) for r in records]
    samples = sum(len(x) for _, x in loaded)

    subprocess.check_call(
        ["cargo", "build", "--release", "-q", "-p", "ecg-signal", "--example", "detect_throughput"], cwd=ROOT
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    exe = target / "release" / "examples" / "detect_throughput"
    rounds = int(os.environ.get("COMPARE_ROUNDS", "5"))
    sleepecg_s = float("inf")
    ours = {}
    for _ in range(rounds):
        # Five passes each per round, as detect_throughput makes.
        for _ in range(5):
            t = time.perf_counter()
            for fs, x in loaded:
                sleepecg.detect_heartbeats(x, fs, backend="c")
            sleepecg_s = min(sleepecg_s, time.perf_counter() - t)
        for label, extra in (("first lead", ["--first-lead"]), ("all leads", [])):
            out = subprocess.check_output([str(exe)] + extra + records, cwd=ROOT, text=True)
            r = json.loads(out.strip().splitlines()[-1])
            if label not in ours or r["samples_per_s"] > ours[label]["samples_per_s"]:
                ours[label] = r
    sleepecg_rate = samples / sleepecg_s

    print(f"records: {len(records)}, samples per lead: {samples}, rounds: {rounds}")
    print(f"sleepecg {sleepecg.__version__} (C backend, first lead): {sleepecg_rate / 1e6:8.2f} M samples/s")
    for label, r in ours.items():
        rate = r["samples_per_s"]
        print(
            f"ecg-triage ({label}, {r['leads']} lead(s)):{' ' * (12 - len(label))}{rate / 1e6:8.2f} M samples/s"
            f"  ratio {rate / sleepecg_rate:5.1f}x"
        )


if __name__ == "__main__":
    main()
