"""notmnist serve: a real server on a free loopback port (a `notmnist serve` subprocess), a quick model
trained here, real requests: TF-Serving REST predict and status, uploads answered as `notmnist predict
--json`, every bad-input family refused with a 4xx while the server goes on, clean SIGTERM/SIGINT, a short
load run, the TF-Serving schema against the exported SavedModel, and the page in headless Chromium."""

import asyncio
import base64
import hashlib
import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from PIL import Image

from helpers import LETTERS, REPO, png_bytes, real_members, run
from tiny_model import arrays, split_members, train_quick_model

CHROMIUM = Path("/usr/bin/chromium")
spec = importlib.util.spec_from_file_location("serve_load", REPO / "bench/serve_load.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

MAX_BODY = 1 << 20
MAX_PENDING = 6
READ_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def glyph_sets(real_archive):
    return split_members(real_members(per_class=60, archive=real_archive), 5)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, glyph_sets):
    return train_quick_model(glyph_sets[0], tmp_path_factory.mktemp("model") / "model.keras")


@pytest.fixture(scope="module")
def held_out(glyph_sets):
    """(PNG bytes list, uint8 images, float32 instances (N, 28, 28, 1)) of glyphs the model never saw."""
    from notmnist.core.contract import scale

    images, _ = arrays(glyph_sets[1])
    return [png_bytes(image) for image in images], images, scale(images)


@pytest.fixture(scope="module")
def expected(model_path, held_out):
    """The model's own probabilities for the held-out glyphs, computed in this process."""
    from notmnist.core.contract import load_model

    return load_model(model_path).predict_on_batch(held_out[2])


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics") / "evaluate.json"
    path.write_text(json.dumps({"val": {"accuracy": 0.81, "images": 50}, "test": {"accuracy": 0.79, "images": 50}}))
    return path


@pytest.fixture(scope="module")
def server(model_path, metrics):
    options = ["--max-body", MAX_BODY, "--max-pending", MAX_PENDING, "--read-timeout", READ_TIMEOUT]
    process, url = bench.start_server(model_path, *options, "--metrics", metrics)
    yield url
    process.terminate()
    assert process.wait(timeout=30) == 0


def call(method, url, json_body=None, data=None, files=(), fields=None):
    """One request with a fresh client -> (status, JSON answer, headers). files: [(name, bytes)]."""

    async def go():
        body = data
        if files or fields:
            body = aiohttp.FormData()
            for name, content in files:
                body.add_field("image", content, filename=name, content_type="application/octet-stream")
            for key, value in (fields or {}).items():
                body.add_field(key, value)
        async with aiohttp.ClientSession() as session:
            async with session.request(method, url, json=json_body, data=body) as response:
                return response.status, await response.json(content_type=None), response.headers

    return asyncio.run(go())


def raw(url, request, wait=10.0):
    """Send raw bytes on one socket, read the answer -> (status, JSON body). The server may keep reading
    (aiohttp drains an unread body for up to 10 s before it closes), so read by Content-Length."""
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(request)
        sock.settimeout(wait)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < length(answer):
            answer += sock.recv(65536) or b"\r\n\r\n"
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def length(answer):
    head = answer.partition(b"\r\n\r\n")[0].decode().lower()
    return int(head.split("content-length:")[1].split()[0]) if "content-length:" in head else 0


def b64(data):
    return {"b64": base64.b64encode(data).decode()}


def good_request_answers(url, held_out, expected):
    status, answer, _ = call("POST", f"{url}/v1/models/notmnist:predict", {"instances": [b64(held_out[0][0])]})
    assert status == 200, answer
    assert answer["predictions"][0]["letter"] == LETTERS[expected[0].argmax()]


# REST predict and status


def test_rest_predict_answers_arrays_and_b64_pngs_as_the_model_does(server, held_out, expected):
    pngs, _, x = held_out
    url = f"{server}/v1/models/notmnist:predict"
    by_array = call("POST", url, {"instances": x[:, :, :, 0].tolist()})
    by_array_28x28x1 = call("POST", url, {"instances": x.tolist()})
    by_png = call("POST", f"{server}/v1/models/notmnist/versions/1:predict", {"instances": [b64(p) for p in pngs]})
    for status, answer, _ in (by_array, by_array_28x28x1, by_png):
        assert status == 200, answer
        predictions = answer["predictions"]
        assert len(predictions) == len(x)
        np.testing.assert_allclose([p["probabilities"] for p in predictions], expected, atol=1e-5)
        assert [p["letter"] for p in predictions] == [LETTERS[i] for i in expected.argmax(1)]
        for p, row in zip(predictions, expected):
            assert [t["letter"] for t in p["top3"]] == [LETTERS[i] for i in np.argsort(-row, kind="stable")[:3]]
            assert p["probability"] == p["top3"][0]["probability"] == round(float(row.max()), 4)


def test_status_names_the_model_file_its_hash_and_its_metrics_and_health_answers(server, model_path, metrics):
    status, answer, _ = call("GET", f"{server}/v1/models/notmnist")
    assert status == 200
    assert answer["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    model = answer["model"]
    assert model["sha256"] == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert model["metrics"]["val"]["accuracy"] == 0.81 and model["metrics"]["test"]["accuracy"] == 0.79
    assert model["metrics"]["source"] == str(metrics) and model["letters"] == LETTERS
    assert call("GET", f"{server}/healthz")[:2] == (200, {"status": "ok"})


def test_status_reports_the_projects_metrics_only_for_the_file_dvc_lock_says_evaluate_scored(tmp_path, model_path):
    from notmnist.tools.serve import identity

    (tmp_path / "models").mkdir()
    (tmp_path / "metrics").mkdir()
    model = shutil.copy(model_path, tmp_path / "models/model.keras")
    (tmp_path / "metrics/evaluate.json").write_text(json.dumps({"val": {"accuracy": 0.97}, "test": {"accuracy": 0.96}}))
    md5 = hashlib.md5(model_path.read_bytes()).hexdigest()
    lock = {"schema": "2.0", "stages": {"evaluate": {"deps": [{"path": "models/model.keras", "md5": md5}]}}}
    (tmp_path / "dvc.lock").write_text(json.dumps(lock))  # JSON is YAML
    found = identity(Path(model))
    assert found["metrics"]["test"] == {"accuracy": 0.96} and found["metrics"]["val"] == {"accuracy": 0.97}
    lock["stages"]["evaluate"]["deps"][0]["md5"] = "0" * 32  # evaluate scored another file
    (tmp_path / "dvc.lock").write_text(json.dumps(lock))
    assert identity(Path(model))["metrics"] is None
    assert identity(model_path)["metrics"] is None  # not the project's models/model.keras


# Uploads: the same answer as `notmnist predict --json`


def test_upload_answers_as_notmnist_predict_json_for_the_same_files(server, model_path, held_out, tmp_path):
    pngs, images, _ = held_out
    files = {f"glyph{i}.png": png for i, png in enumerate(pngs[:3])}
    big = Image.fromarray(images[3]).resize((40, 40)).convert("RGB")  # converted, with a note
    for name, kind in (("big.png", "PNG"), ("photo.jpg", "JPEG")):
        buffer = io.BytesIO()
        big.save(buffer, format=kind)
        files[name] = buffer.getvalue()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = sorted(tmp_path.iterdir())
    for invert in (False, True):
        flag = ["--invert"] if invert else []
        cli = run([sys.executable, "-m", "notmnist", "predict", model_path, *paths, "--json", *flag], REPO)
        by_cli = {Path(r["image"]).name: r for r in map(json.loads, cli.stdout.splitlines())}
        status, answer, _ = call(
            "POST", f"{server}/upload", files=[(p.name, p.read_bytes()) for p in paths],
            fields={"invert": "1"} if invert else None,
        )  # fmt: skip
        assert status == 200, answer
        assert len(answer["predictions"]) == len(by_cli) == len(files)
        for p in answer["predictions"]:
            want = by_cli[p["image"]]
            assert {k: p.get(k) for k in ("letter", "probability", "top3", "note")} == {
                k: want.get(k) for k in ("letter", "probability", "top3", "note")
            }, p["image"]
        assert ("hint" in answer) == ("hint:" in cli.stderr)
    assert "converted PNG mode RGB 40x40" in by_cli["big.png"]["note"]


# Bad input: a 4xx naming what was wrong and what is accepted, and the next good request succeeds


def png_claiming(width, height):
    """A 1x1 PNG whose header claims width x height (valid CRC): a decompression bomb's first bytes."""
    data = bytearray(png_bytes(np.zeros((1, 1), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def multipart(boundary, name, content, close=True):
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n\r\n'.encode()
    return body + content + (f"\r\n--{boundary}--\r\n".encode() if close else b"")


def http(path, body, content_type="application/json", length=None):
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {length or len(body)}"
    return f"{head}\r\nConnection: close\r\n\r\n".encode() + body


PREDICT = "/v1/models/notmnist:predict"
ZEROS = np.zeros((28, 28)).tolist()
CASES = {  # case: (method, path, request keywords, status, words the message must hold)
    "body over --max-body": ("POST", PREDICT, {"data": b"0" * (MAX_BODY + 1)}, 413, "bytes a request"),
    "not JSON": ("POST", PREDICT, {"data": b"{instances: oops"}, 400, "not JSON"),
    "JSON nested 100,000 deep": ("POST", PREDICT, {"data": b"[" * 100_000 + b"]" * 100_000}, 400, "not JSON"),
    "no instances": ("POST", PREDICT, {"json_body": {"inputs": [ZEROS]}}, 400, "no list named instances"),
    "empty instances": ("POST", PREDICT, {"json_body": {"instances": []}}, 400, "0 instances"),
    "too many instances": ("POST", PREDICT, {"json_body": {"instances": [0] * 257}}, 400, "257 instances"),
    "wrong shape": ("POST", PREDICT, {"json_body": {"instances": [ZEROS[:27]]}}, 400, "shape [27, 28]"),
    "NaN": ("POST", PREDICT, {"data": json.dumps({"instances": [[[float("nan")] * 28] * 28]})}, 400, "values nan..nan: NaN"),
    "strings": ("POST", PREDICT, {"json_body": {"instances": [[["0.5"] * 28] * 28]}}, 400, "not numbers"),
    "ragged": ("POST", PREDICT, {"json_body": {"instances": [[[0.5] * 28] * 27 + [[0.5]]]}}, 400, "ragged"),
    "pixels 0-255": ("POST", PREDICT, {"json_body": {"instances": [[[255] * 28] * 28]}}, 400, "values 255..255"),
    "b64 not base64": ("POST", PREDICT, {"json_body": {"instances": [{"b64": "***"}]}}, 400, "not base64"),
    "b64 not an image": ("POST", PREDICT, {"json_body": {"instances": [b64(b"hello")]}}, 400, "not an image"),
    "other object": ("POST", PREDICT, {"json_body": {"instances": [{"png": "x"}]}}, 400, "keys ['png']"),
    "unknown signature": ("POST", PREDICT, {"json_body": {"signature_name": "x", "instances": [ZEROS]}}, 400, "x"),
    "unknown model": ("GET", "/v1/models/other", {}, 404, "serving 'notmnist'"),
    "unknown version": ("POST", "/v1/models/notmnist/versions/2:predict", {}, 404, "version 2"),
    "unknown path": ("GET", "/v2/predict", {}, 404, "endpoints: GET /"),
    "wrong method": ("GET", PREDICT, {}, 405, "endpoints: GET /"),
    "upload: no image field": ("POST", "/upload", {"fields": {"invert": "1"}}, 400, "0 images"),
    "upload: not an image": ("POST", "/upload", {"files": [("a.png", b"GIF89a not really")]}, 400, "not an image"),
    "upload: over 4096 px a side": ("POST", "/upload", {"files": [("big.png", png_claiming(5000, 5000))]}, 400, "larger than 4096"),
    "upload: pixel bomb": ("POST", "/upload", {"files": [("bomb.png", png_claiming(10**5, 10**5))]}, 400, "decompression bomb"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_a_4xx_naming_the_problem_and_the_server_goes_on(server, held_out, expected, case):
    method, path, keywords, status, words = CASES[case]
    got, answer, _ = call(method, f"{server}{path}", **keywords)
    assert got == status and words in answer["error"], answer
    good_request_answers(server, held_out, expected)


def test_truncated_uploads_and_stalled_bodies_are_refused_and_the_server_goes_on(server, held_out, expected):
    png = held_out[0][0]
    status, answer, _ = call("POST", f"{server}/upload", files=[("cut.png", png[: len(png) // 2])])
    assert status == 400 and "truncated" in answer["error"], answer
    body = multipart("XX", "a.png", png, close=False)  # the multipart body ends before its closing boundary
    status, answer = raw(server, http("/upload", body, "multipart/form-data; boundary=XX"))
    assert status == 400 and "truncated" in answer["error"], answer
    start = time.monotonic()  # a client that stops sending half-way: 408 after --read-timeout
    status, answer = raw(server, http(PREDICT, b'{"instances": [', length=1000))
    assert status == 408 and "--read-timeout" in answer["error"], answer
    assert READ_TIMEOUT <= time.monotonic() - start < READ_TIMEOUT + 5
    good_request_answers(server, held_out, expected)


def test_too_many_requests_at_once_get_429_and_slow_clients_hold_no_one_else_up(server, held_out, expected):
    port = int(server.rsplit(":", 1)[1])
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_PENDING)]
    try:
        for sock in slow:  # each holds a request slot, sending its body slowly
            sock.sendall(http(PREDICT, b'{"inst', length=1000))
        assert call("GET", f"{server}/healthz")[0] == 200  # GETs are not counted
        deadline = time.monotonic() + 10  # until the server has read every slow client's headers (a loaded host)
        while (answered := call("POST", f"{server}{PREDICT}", {"instances": [ZEROS]}))[0] != 429:
            assert answered[0] == 200 and time.monotonic() < deadline, answered
            time.sleep(0.1)
        status, answer, headers = answered
        assert status == 429 and "--max-pending" in answer["error"] and headers["Retry-After"] == "1", answer
    finally:
        for sock in slow:
            sock.close()
    time.sleep(0.3)
    good_request_answers(server, held_out, expected)


# Shutdown and load


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_shuts_the_server_down_cleanly_even_with_a_stalled_client(model_path, held_out, expected, signum):
    process, url = bench.start_server(model_path)
    good_request_answers(url, held_out, expected)
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(http(PREDICT, b"{", length=100))
        time.sleep(0.2)
        process.send_signal(signum)
        assert process.wait(timeout=20) == 0
    out, err = process.communicate()
    assert "serve: stopped" in out and "Traceback" not in err, err


def test_short_load_run_answers_every_request_correctly(server, held_out, expected):
    pngs, _, x = held_out
    for bodies, requests in ((bench.payloads(x, 1), 120), (bench.payloads(x, 8), 30), (bench.payloads(x, 1, pngs), 60)):
        result = bench.run_load(server, bodies, expected, clients=4, seconds=60, requests=requests)
        assert result["failed"] == [] and result["wrong"] == 0 and result["requests"] == requests, result


def test_the_command_refuses_a_missing_model_and_a_taken_port(server, model_path, tmp_path):
    result = run([sys.executable, "-m", "notmnist", "serve", tmp_path / "none.keras"], REPO, check=False)
    assert result.returncode == 2 and "none.keras not found" in result.stderr
    port = server.rsplit(":", 1)[1]
    result = run([sys.executable, "-m", "notmnist", "serve", model_path, "--port", port], REPO, check=False)
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr, result.stderr


# TF Serving's REST schema, against the SavedModel `notmnist export` writes


def test_answers_keep_tf_servings_rest_schema_and_its_numbers_for_the_exported_saved_model(
    server, model_path, held_out, tmp_path
):
    import tensorflow as tf

    from notmnist.core.contract import load_model
    from notmnist.tools.export import export_saved_model

    _, _, x = held_out
    export_saved_model(load_model(model_path), tmp_path / "1")  # TF Serving's layout: <base>/<name>/<version>/
    signature = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    (output,) = signature(tf.constant(x)).values()  # one output tensor: TF Serving answers a list per instance
    tf_serving = {"predictions": output.numpy().tolist()}
    request = {"instances": x.tolist()}
    status, bare, _ = call("POST", f"{server}{PREDICT}", {"signature_name": "serving_default", **request})
    assert status == 200 and set(bare) == set(tf_serving) == {"predictions"}
    assert np.shape(bare["predictions"]) == np.shape(tf_serving["predictions"]) == (len(x), 10)
    np.testing.assert_allclose(bare["predictions"], tf_serving["predictions"], atol=1e-5)
    status, named, _ = call("POST", f"{server}{PREDICT}", request)  # named outputs: an object per instance
    assert status == 200 and set(named) == {"predictions"} and len(named["predictions"]) == len(x)
    assert all(set(p) == {"letter", "probability", "top3", "probabilities"} for p in named["predictions"])
    np.testing.assert_allclose([p["probabilities"] for p in named["predictions"]], tf_serving["predictions"], atol=1e-5)
    status, error, _ = call("POST", f"{server}{PREDICT}", {"instances": "x"})
    assert status == 400 and set(error) == {"error"} and isinstance(error["error"], str)  # TF Serving's error shape


# The page, in headless Chromium


async def devtools(url, upload, shot, folder):
    """Open `url` in headless Chromium, pick `upload` in its file input (a real upload through the page),
    wait for the answer to be drawn -> (text of the results table, every URL the page requested)."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=folder)
    browser = await asyncio.create_subprocess_exec(
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=900,640",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--remote-debugging-port=0", "about:blank",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        while b"DevTools listening on" not in (line := await asyncio.wait_for(browser.stderr.readline(), 60)):
            assert line, "Chromium exited before it listened"
        port = line.decode().split("ws://")[1].split("/")[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{port}/json/list") as response:
                target = next(t for t in await response.json() if t["type"] == "page")
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids, requested = iter(range(1, 10**6)), []

                async def cdp(method, **params):
                    await ws.send_json({"id": (number := next(ids)), "method": method, "params": params})
                    while True:
                        message = await asyncio.wait_for(ws.receive_json(), 60)
                        if message.get("method") == "Network.requestWillBeSent":
                            requested.append(message["params"]["request"]["url"])
                        if message.get("id") == number:
                            assert "error" not in message, message
                            return message["result"]

                await cdp("Network.enable")
                await cdp("Page.navigate", url=url)
                ready = (
                    "document.readyState == 'complete' && /sha256/.test(document.getElementById('model')?.textContent)"
                )
                for _ in range(600):  # until the page has loaded and shown the model's status
                    if (await cdp("Runtime.evaluate", expression=ready, returnByValue=True))["result"]["value"]:
                        break
                    await asyncio.sleep(0.1)
                root = (await cdp("DOM.getDocument"))["root"]["nodeId"]
                node = (await cdp("DOM.querySelector", nodeId=root, selector="#pick"))["nodeId"]
                await cdp("DOM.setFileInputFiles", nodeId=node, files=[str(path) for path in upload])
                for _ in range(600):
                    drawn = await cdp(
                        "Runtime.evaluate",
                        expression="document.getElementById('results').innerText",
                        returnByValue=True,
                    )
                    if drawn["result"]["value"].count("\n") + 1 >= len(upload):
                        break
                    await asyncio.sleep(0.1)
                image = await cdp("Page.captureScreenshot", format="png")
                shot.write_bytes(base64.b64decode(image["data"]))
                return drawn["result"]["value"], requested
    finally:
        browser.kill()
        await browser.wait()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium (/usr/bin/chromium) is not installed")
def test_the_page_uploads_a_picked_image_and_draws_the_answer_in_headless_chromium(server, held_out, tmp_path):
    pngs, _, _ = held_out
    upload = [tmp_path / "first.png", tmp_path / "second.png", tmp_path / "third.png"]
    for path, data in zip(upload, pngs[::7]):
        path.write_bytes(data)
    shot = tmp_path / "page.png"
    drawn, requested = asyncio.run(devtools(f"{server}/", upload, shot, tmp_path))
    _, answer, _ = call("POST", f"{server}/upload", files=[(p.name, p.read_bytes()) for p in upload])
    for p in answer["predictions"]:  # each row: the file, its letter, probability and top 3, as the server said
        row = next(line for line in drawn.splitlines() if p["image"] in line)
        assert f"\t{p['letter']}\t{p['probability']:.3f}\t" in row, drawn
        assert " ".join(f"{t['letter']} {t['probability']:.3f}" for t in p["top3"]) in " ".join(row.split()), drawn
    assert requested and all(u.startswith((server, "blob:", "data:")) for u in requested), requested
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 5  # drawn, not blank
    if keep := os.environ.get("NOTMNIST_SERVE_SCREENSHOT"):  # for a human to look at
        shutil.copy(shot, keep)
