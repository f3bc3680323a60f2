"""serve: the model over HTTP, in TensorFlow Serving's REST dialect, with a page to drop images on.

    notmnist serve [models/model.keras] [--host 127.0.0.1] [--port 8501] [--name notmnist]

POST /v1/models/NAME:predict takes {"instances": [...]}: 28x28 (or 28x28x1) arrays in [0, 1], or {"b64": PNG};
GET /v1/models/NAME gives the status and the model's identity; POST /upload takes image files and answers as
`notmnist predict --json`; GET /healthz; GET / is a page to drop images on. Bad input gets a 4xx with
{"error": "..."} and the server goes on. Loopback only unless --host says otherwise: docs/deploy.md.
"""

import asyncio
import base64
import binascii
import hashlib
import json
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from aiohttp import web

from notmnist.core.contract import LETTERS, check_model_file, load_model, scale
from notmnist.core.glyphs import BadGlyph, looks_inverted
from notmnist.core.runtime import PipelineError
from notmnist.tools.images import MAX_SIDE, load_image, top_letters

MAX_IMAGES = 256  # per request
CHUNK = 128  # images per model call: the packaged model runs 9 shifted copies of each
SIGNATURES = ("letters", "serving_default", "serve")  # the default; then the SavedModel's: bare probabilities
ACCEPTED = 'each instance is a 28x28 (or 28x28x1) array of numbers in [0, 1] (pixel/255, light glyph on dark) or {"b64": "<base64 PNG or JPEG>"}'
IMAGES = f"accepted: PNG, JPEG or another image Pillow reads, at most {MAX_SIDE} px a side"
UPLOAD = f"send multipart/form-data with 1 to {MAX_IMAGES} files named 'image', and invert=1 for dark ink on light"
HINT = "most are dark glyphs on a light ground; the model reads light on dark: send invert=1"


class Refused(Exception):
    """Refused(HTTP status, message): what was wrong with a request and what is accepted."""


def image(name, data):
    """Image bytes -> (uint8 28x28, note or None), exactly as `notmnist predict` decodes and converts them."""
    try:
        return load_image(data, strict=False)
    except BadGlyph as reason:
        raise Refused(400, f"{name}: {reason}; {IMAGES}") from None


def instance(i, item):
    """One JSON instance -> float32 (28, 28, 1) in [0, 1], or Refused naming what is wrong with it."""
    if isinstance(item, dict):
        if list(item) != ["b64"] or not isinstance(item["b64"], str):
            raise Refused(400, f"instance {i}: an object with keys {sorted(item)}; {ACCEPTED}")
        try:
            return scale(image(f"instance {i}", base64.b64decode(item["b64"], validate=True))[0][None])[0]
        except binascii.Error as error:
            raise Refused(400, f"instance {i}: b64 is not base64 ({error}); {ACCEPTED}") from None
    try:
        x = np.asarray(item)
    except ValueError:  # ragged nesting
        x = np.asarray("ragged")
    if x.dtype.kind not in "iuf" or x.shape not in ((28, 28), (28, 28, 1)):
        what = f"shape {list(x.shape)}" if x.dtype.kind in "iuf" else "ragged, or not numbers (strings, booleans, null)"
        raise Refused(400, f"instance {i}: {what}; {ACCEPTED}")
    if not (0 <= x.min() and x.max() <= 1):  # NaN fails both comparisons
        raise Refused(400, f"instance {i}: values {x.min():g}..{x.max():g}: NaN or outside [0, 1]; {ACCEPTED}")
    return x.astype(np.float32).reshape(28, 28, 1)


def parse_instances(body):
    """A predict request's body -> (float32 (N, 28, 28, 1), signature name)."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
        raise Refused(400, f'the body is not JSON ({error}); send {{"instances": [...]}}') from None
    instances = request.get("instances") if isinstance(request, dict) else None
    if not isinstance(instances, list) or not 1 <= len(instances) <= MAX_IMAGES:
        found = f"{len(instances)} instances" if isinstance(instances, list) else "no list named instances"
        raise Refused(400, f'{found}; send {{"instances": [...]}} with 1 to {MAX_IMAGES} ("inputs" is not supported)')
    signature = request.get("signature_name", SIGNATURES[0])
    if signature not in SIGNATURES:
        raise Refused(400, f"signature_name {signature!r} is unknown; this model has {', '.join(SIGNATURES)}")
    return np.stack([instance(i, item) for i, item in enumerate(instances)]), signature


def answers(probabilities, signature=SIGNATURES[0]):
    """One prediction per row; top3 and its rounding as `notmnist predict --json`'s."""
    if signature != SIGNATURES[0]:
        return probabilities.tolist()
    return [{**top_letters(row)[0], "top3": top_letters(row), "probabilities": row.tolist()} for row in probabilities]


def identity(path, metrics=None):
    """The model file's sha256, and the scores it got: from `metrics`, else from the project's
    metrics/evaluate.json when dvc.lock says evaluate scored exactly this file."""
    data, path = path.read_bytes(), Path(path).resolve()
    found = {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "letters": LETTERS}
    root = path.parents[1]
    if metrics is None and path == root / "models/model.keras" and (root / "dvc.lock").is_file():
        deps = yaml.safe_load((root / "dvc.lock").read_text())["stages"].get("evaluate", {}).get("deps", [])
        scored = {dep["path"]: dep.get("md5") for dep in deps}.get("models/model.keras")
        metrics = root / "metrics/evaluate.json" if scored == hashlib.md5(data).hexdigest() else None
    try:
        scores = json.loads(Path(metrics).read_text()) if metrics else None
    except ValueError as error:
        raise PipelineError(f"{metrics} is not JSON ({error}); give an evaluate.json from `dvc repro`") from None
    found["metrics"] = scores and {"source": str(metrics), **{k: scores[k] for k in ("val", "test") if k in scores}}
    return found


def make_app(model, name, model_identity, max_body=4 << 20, max_pending=64, read_timeout=10.0, max_batch=256):
    queue, model_thread, pending = asyncio.Queue(), ThreadPoolExecutor(1, thread_name_prefix="model"), 0

    def predict_chunks(x):
        return np.concatenate([model.predict_on_batch(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)])

    async def batcher():
        """The model on one thread, off the event loop (Keras predict is not safe to call concurrently);
        the requests that arrive while it runs are answered together by its next call."""
        while True:
            batch = [await queue.get()]
            while not queue.empty() and sum(len(x) for x, _ in batch) < max_batch:
                batch.append(queue.get_nowait())
            try:
                x = np.concatenate([x for x, _ in batch])
                out = await asyncio.get_running_loop().run_in_executor(model_thread, predict_chunks, x)
                out = np.split(out, np.cumsum([len(x) for x, _ in batch])[:-1])
            except Exception as error:  # each waiting request answers 500; the loop goes on
                out = [error] * len(batch)
            for (_, future), result in zip(batch, out):
                if not future.done():  # its client may have gone
                    (future.set_exception if isinstance(result, Exception) else future.set_result)(result)

    async def probabilities(x):
        queue.put_nowait((x, future := asyncio.get_running_loop().create_future()))
        return await future

    endpoints = f"GET /, GET /healthz, GET /v1/models/{name}, POST /v1/models/{name}:predict, POST /upload"

    @web.middleware
    async def guard(request, handler):
        nonlocal pending
        counted = request.method == "POST"
        pending += counted
        try:
            if pending > max_pending:
                raise Refused(429, f"{max_pending} requests are being answered (--max-pending); retry in a second")
            return await handler(request)
        except Refused as error:
            status, message = error.args
        except web.HTTPException as error:  # 404, 405, 413: no handler raises a redirect
            limit = f"at most {max_body:,} bytes a request (--max-body)" if error.status == 413 else ""
            status, message = error.status, f"{error.text}; {limit or f'endpoints: {endpoints}'}"
        except ConnectionError:  # the client went away mid-request: nobody to answer
            raise
        except Exception as error:
            traceback.print_exc()
            status, message = 500, f"internal error ({type(error).__name__}: {error}); the server goes on"
        finally:
            pending -= counted
        headers = {"Retry-After": "1"} if status == 429 else None
        return web.json_response({"error": message}, status=status, headers=headers)

    async def body(read):
        try:
            async with asyncio.timeout(read_timeout):
                return await read()
        except TimeoutError:
            raise Refused(408, f"the request did not arrive whole within {read_timeout:g} s (--read-timeout)") from None
        except ValueError as error:  # aiohttp: a multipart body cut short or malformed
            raise Refused(400, f"malformed or truncated request body ({error})") from None

    async def status(request):
        version = request.match_info["version"].rpartition("/")[2]
        if request.match_info["name"] != name or version not in ("", "1"):
            raise Refused(404, f"no model {request.match_info['name']!r} version {version or 1}; serving {name!r} 1")
        if request.method == "GET":
            ok = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            return web.json_response({"model_version_status": [ok], "model": {"name": name, **model_identity}})
        x, signature = await asyncio.to_thread(parse_instances, await body(request.read))  # off the event loop
        return web.json_response({"predictions": answers(await probabilities(x), signature)})

    async def upload(request):
        form = await body(request.post)
        files = [field for field in form.getall("image", []) if isinstance(field, web.FileField)]
        if not 1 <= len(files) <= MAX_IMAGES:
            raise Refused(400, f"{len(files)} images; {UPLOAD}")
        invert = str(form.get("invert", request.query.get("invert", ""))).lower() in ("1", "true", "on", "yes")
        decoded = await asyncio.to_thread(lambda: [image(field.filename, field.file.read()) for field in files])
        images = np.stack([pixels for pixels, _ in decoded])
        found = answers(await probabilities(scale(255 - images if invert else images)))
        predictions = [
            {"image": field.filename, **answer, **({"note": note} if note else {})}
            for field, (_, note), answer in zip(files, decoded, found)
        ]
        hint = {"hint": HINT} if not invert and looks_inverted(images) else {}
        return web.json_response({"predictions": predictions, **hint})

    async def lifetime(app):
        task = asyncio.create_task(batcher())
        yield
        task.cancel()
        model_thread.shutdown()

    app = web.Application(client_max_size=max_body, middlewares=[guard])
    app.cleanup_ctx.append(lifetime)
    model_route = r"/v1/models/{name:[^/:]+}{version:(/versions/[^/:]+)?}"
    app.router.add_get(model_route, status)
    app.router.add_post(model_route + ":predict", status)
    app.router.add_post("/upload", upload)
    app.router.add_get("/healthz", lambda request: web.json_response({"status": "ok"}))
    page = Path(__file__).with_name("serve_page.html").read_text().replace("{{name}}", name)
    app.router.add_get("/", lambda request: web.Response(text=page, content_type="text/html"))
    return app


def add_arguments(parser):
    parser.add_argument("model_path", type=Path, nargs="?", default=Path("models/model.keras"))
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8501, help="TCP port (default 8501, TF Serving's REST port)")
    parser.add_argument("--name", default="notmnist", help="the model's name in /v1/models/NAME")
    parser.add_argument("--metrics", type=Path, help="an evaluate.json to report in the status answer")
    parser.add_argument("--max-body", type=int, default=4 << 20, help="bytes a request may send (default 4 MiB)")
    parser.add_argument("--max-pending", type=int, default=64, help="POST requests answered at once; more get 429")
    parser.add_argument("--read-timeout", type=float, default=10.0, help="seconds a request's body may take")
    parser.add_argument("--max-batch", type=int, default=256, help="images per model call from concurrent requests")


def run(args):
    check_model_file(args.model_path)  # a missing model or --metrics file is named before TensorFlow loads
    found = identity(args.model_path, args.metrics)
    model = load_model(args.model_path)
    model.predict_on_batch(np.zeros((1, 28, 28, 1), np.float32))  # compile now, not on the first request
    app = make_app(model, args.name, found, args.max_body, args.max_pending, args.read_timeout, args.max_batch)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"serve: on {args.host} anyone who reaches it can use it (no authentication, no TLS)", file=sys.stderr)
    line = f"serve: {args.name} (sha256 {found['sha256'][:12]}) on http://{args.host}:{args.port}/"
    options = {"host": args.host, "port": args.port, "shutdown_timeout": 5, "access_log": None}
    try:  # run_app stops cleanly on SIGINT and SIGTERM: stops listening, ends open requests, then cleanup
        web.run_app(app, **options, print=lambda _: print(line, flush=True))
    except (OSError, OverflowError) as error:
        raise PipelineError(f"cannot listen on {args.host}:{args.port} ({error}); pick another --port") from None
    print("serve: stopped", flush=True)
