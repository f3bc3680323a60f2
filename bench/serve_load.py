"""Load on `notmnist serve`: N concurrent clients on loopback, throughput and latency, next to the
in-process model.predict rate on the same images, and the server's memory after warm-up and after the run.

    python bench/serve_load.py                                  # models/model.keras
    python bench/serve_load.py /tmp/model.keras --clients 8 --seconds 20 --batch 32 --rounds 3
    python bench/serve_load.py /tmp/model.keras --max-batch 1     # the server without batching, to compare

Starts the server itself (a free loopback port), sends real glyphs from the notMNIST archive
($NOTMNIST_ARCHIVE or ../shared/data) as TF-Serving REST requests, one image or --batch images each,
and checks every answer against the model run in this process. Figures, not pass/fail: the clients
share the machine's cores with the server. tests/test_serve.py runs a short version of run_load.
"""

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

TOLERANCE = 1e-3  # largest probability difference from the in-process answer that still counts as correct


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model, *options, port=None):
    """`notmnist serve` as a subprocess on loopback -> (process, base URL), once /healthz answers."""
    import urllib.request

    port = port or free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "notmnist", "serve", str(model), "--port", str(port), *map(str, options)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"notmnist serve exited {process.returncode}: {process.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("notmnist serve did not answer /healthz within 60 s")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def payloads(x, batch, b64=None):
    """Request bodies of `batch` images each, cycling through x (float32 (N, 28, 28, 1)); with b64 (PNG
    bytes per image), the images go as {"b64": ...} instead of arrays. -> [(body, first index)]."""
    bodies = []
    for start in range(0, len(x), batch):
        index = [(start + i) % len(x) for i in range(batch)]
        instances = [{"b64": base64.b64encode(b64[i]).decode()} for i in index] if b64 else x[index, :, :, 0].tolist()
        bodies.append((json.dumps({"instances": instances}).encode(), index))
    return bodies


async def _client(session, url, bodies, expected, deadline, requests, stats):
    while time.perf_counter() < deadline and stats["sent"] < requests:
        body, index = bodies[stats["sent"] % len(bodies)]
        stats["sent"] += 1
        start = time.perf_counter()
        try:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                answer = await response.json()
        except Exception as error:  # counted, and the run goes on
            stats["failed"].append(repr(error))
            continue
        stats["latency"].append(time.perf_counter() - start)
        if response.status != 200:
            stats["failed"].append(f"{response.status}: {answer}")
            continue
        got = np.array([p["probabilities"] for p in answer["predictions"]])
        letters = [p["letter"] for p in answer["predictions"]]
        wrong = np.abs(got - expected[index]).max(axis=1) > TOLERANCE
        wrong |= np.array(letters) != np.array(["ABCDEFGHIJ"[i] for i in expected[index].argmax(1)])
        stats["images"] += len(index)
        stats["wrong"] += int(wrong.sum())


async def _load(url, bodies, expected, clients, seconds, requests):
    import aiohttp

    stats = {"sent": 0, "images": 0, "wrong": 0, "failed": [], "latency": []}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(
            *(_client(session, url, bodies, expected, deadline, requests, stats) for _ in range(clients))
        )
        elapsed = time.perf_counter() - start
    latency = sorted(stats["latency"]) or [float("nan")]
    return {
        "clients": clients,
        "requests": len(stats["latency"]),
        "images": stats["images"],
        "failed": stats["failed"],
        "wrong": stats["wrong"],
        "requests_per_s": round(len(stats["latency"]) / elapsed, 1),
        "images_per_s": round(stats["images"] / elapsed, 1),
        "p50_ms": round(1000 * latency[len(latency) // 2], 2),
        "p99_ms": round(1000 * latency[min(len(latency) - 1, int(len(latency) * 0.99))], 2),
    }


def run_load(url, bodies, expected, clients=4, seconds=10.0, requests=10**9):
    """POST `bodies` to url's predict endpoint from `clients` concurrent clients until `seconds` or
    `requests` run out; every answer is checked against `expected` probabilities (N, 10)."""
    return asyncio.run(_load(f"{url}/v1/models/notmnist:predict", bodies, expected, clients, seconds, requests))


def in_process_rate(model, x, batch, seconds=3.0):
    """Images per second of model.predict_on_batch on `batch` images at a time, in this process."""
    model.predict_on_batch(x[:batch])
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.predict_on_batch(x[done % len(x) : done % len(x) + batch])
        done += batch
    return round(done / (time.perf_counter() - start), 1)


def main():
    from helpers import REAL_ARCHIVE, real_members
    from notmnist.core.contract import load_model, scale
    from notmnist.core.glyphs import BadGlyph, decode_png
    from notmnist.core.runtime import quiet_tensorflow

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?", default=Path("models/model.keras"))
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (at most 64)")
    parser.add_argument("--seconds", type=float, default=15.0, help="per scenario (at most 120)")
    parser.add_argument("--batch", type=int, default=32, help="images per request in the batch scenario")
    parser.add_argument("--max-batch", type=int, default=256, help="passed to notmnist serve (1: no batching)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all scenarios (RSS after each)")
    parser.add_argument("--archive", type=Path, default=REAL_ARCHIVE)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model} not found: run `dvc repro`, or give a model path (nothing is trained here)")
    clients, seconds, args.rounds = min(args.clients, 64), min(args.seconds, 120), min(args.rounds, 10)

    pngs, images = [], []
    for data in real_members(per_class=50, archive=args.archive).values():
        try:
            images.append(decode_png(data))
            pngs.append(data)
        except BadGlyph:
            continue
    x = scale(np.stack(images))
    quiet_tensorflow()
    model = load_model(args.model)
    expected = np.concatenate([model.predict_on_batch(x[i : i + 128]) for i in range(0, len(x), 128)])
    process, url = start_server(args.model, "--max-pending", 4 * clients, "--max-batch", args.max_batch)
    report = {"model": str(args.model), "server_max_batch": args.max_batch, "cpus": os.cpu_count()}
    scenarios = {
        "single": payloads(x, 1),
        f"batch{args.batch}": payloads(x, args.batch),
        "single_b64_png": payloads(x, 1, pngs),
    }
    try:
        for bodies in scenarios.values():  # warm-up: every request shape once, for a few seconds
            run_load(url, bodies, expected, clients, seconds=2)
        report["rss_mib_after_warmup"] = round(rss_mib(process.pid), 1)
        for round_ in range(args.rounds):  # memory after each round: flat when nothing leaks
            for name, bodies in scenarios.items():
                result = run_load(url, bodies, expected, clients, seconds)
                result["failed"] = len(result["failed"])
                report.setdefault(name, []).append(result)
                print(f"round {round_ + 1}: {name} {result}", flush=True)
            report.setdefault("rss_mib_after_round", []).append(round(rss_mib(process.pid), 1))
    finally:
        process.terminate()
        report["server_exit"] = process.wait(timeout=30)
    report["in_process_images_per_s"] = {b: in_process_rate(model, x, b) for b in (1, args.batch)}
    for name, batch in (("single", 1), (f"batch{args.batch}", args.batch)):
        best = max(result["images_per_s"] for result in report[name])
        report[f"{name}_http_over_in_process"] = round(best / report["in_process_images_per_s"][batch], 3)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
