#!/usr/bin/env python3
"""Measure the image-ingest preprocessing core per CPU core and turn it into a cost per TB.

Builds a seeded corpus of photo-like JPEGs (2-12 MP, some with EXIF orientation and GPS), then
times, in one process, the straightforward Pillow pipeline against the function's own
`imaging.preprocess` (the code path the handler runs), plus two decode-only floors, states the
quality lost, and prices a TB of input on Lambda, S3, SQS and DynamoDB. It prints figures; it is
not a test. One core here approximates one Lambda vCPU (Lambda gives 1 vCPU at 1769 MB).

`--memory` instead measures peak memory (issue 8): a batch of 7745 x 7745 palette PNGs with
transparency, processed by as many threads as the deployed function runs (WORKERS and the memory
size read from the dev stack's offline plan), once with the old preprocessing (from git, --old-ref)
and once with the function's own; each run in a fresh process, peak RSS from /proc (VmHWM).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps, ImageStat, features

REPO = Path(__file__).resolve().parents[1]
FUNCTION_DIR = REPO / "functions" / "image_ingest"
sys.path.insert(0, str(FUNCTION_DIR))

import budget  # noqa: E402  (the function's modules, found from __file__)
import environment  # noqa: E402
import imaging  # noqa: E402

# The function's environment with the stack's defaults (every variable is required), for imports here.
FUNCTION_ENV = {
    environment.PROCESSED_BUCKET: "bench",
    environment.CATALOG_TABLE: "bench",
    environment.RAW_PREFIX: "incoming/",
    environment.QUARANTINE_PREFIX: "quarantine/",
    environment.SHARD_PREFIX: "shards/",
    environment.LABEL_PATH_SEGMENT: "0",
    environment.TRAINING_IMAGE_SIZE: "512",
    environment.JPEG_QUALITY: "90",
    environment.MAX_INPUT_BYTES: str(50 * 1024 * 1024),
    environment.MAX_PIXELS: "60000000",
    environment.MAX_PIXELS_PER_BYTE: "1000",
    environment.MIN_DIMENSION: "32",
    environment.ALLOWED_FORMATS: "JPEG,PNG,WEBP",
    environment.WORKERS: "4",
    environment.METRIC_NAMESPACE: "bench",
    environment.LAMBDA_MEMORY_MB: "2048",
}

# Prices: us-east-1, list prices as of 2026-11 (first pricing tier, no free tier).
PRICES_AS_OF = "2026-11, us-east-1"
LAMBDA_GB_S = {"arm64": 0.0000133334, "x86_64": 0.0000166667}
LAMBDA_REQUEST = 0.20 / 1e6
S3_GET = 0.0004 / 1000
S3_PUT = 0.005 / 1000  # PUT, COPY, POST, LIST
SQS_REQUEST = 0.40 / 1e6  # standard queue, per 64 KB request
DDB_WRU = 0.625 / 1e6  # on-demand write request unit
DDB_RRU = 0.125 / 1e6  # on-demand read request unit
KMS_REQUEST = 0.03 / 10_000  # SSE-KMS: a Decrypt per GET unless the bucket uses an S3 Bucket Key
# SQS requests per image: EventBridge's SendMessage, plus Lambda's ReceiveMessage and
# DeleteMessageBatch, each carrying up to 10 messages.
SQS_REQUESTS_PER_IMAGE = 1 + 2 / 10
LAMBDA_MB_PER_VCPU = 1769
NOMINAL_IMAGE_BYTES = 500_000  # the issue's ~2M images per TB


@dataclass
class Sample:
    data: bytes
    pixels: int
    orientation: int


def make_corpus(count: int, seed: int, min_mp: float, max_mp: float) -> list[Sample]:
    """Photo-like JPEGs: smooth gradients and blurred shapes, fine edges, sensor-like noise."""
    rng = random.Random(seed)
    noise_tile = Image.frombytes("RGB", (1024, 1024), rng.randbytes(3 * 1024 * 1024))
    aspects = [(4, 3), (3, 2), (16, 9), (1, 1), (3, 4), (2, 3)]
    corpus = []
    for i in range(count):
        mp = rng.uniform(min_mp, max_mp) * 1e6
        aw, ah = rng.choice(aspects)
        w = int(math.sqrt(mp * aw / ah))
        h = int(mp / w)
        img = _photo(rng, w, h, noise_tile)
        exif = Image.Exif()
        orientation = rng.choice([1, 1, 1, 6, 3, 8]) if i % 2 else 1
        if orientation != 1:
            exif[0x0112] = orientation
        if i % 3 == 0:
            gps = exif.get_ifd(0x8825)
            gps.update({1: "N", 2: (52.0, 22.0, rng.uniform(0, 60)), 3: "E", 4: (4.0, 53.0, 2.5)})
        out = io.BytesIO()
        img.save(out, "JPEG", quality=90, exif=exif)
        corpus.append(Sample(out.getvalue(), w * h, orientation))
    return corpus


def _photo(rng: random.Random, w: int, h: int, noise_tile: Image.Image) -> Image.Image:
    small = (max(16, w // 8), max(16, h // 8))
    grad = Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize(small)
    base = ImageOps.colorize(grad, _colour(rng), _colour(rng))
    draw = ImageDraw.Draw(base)
    for _ in range(rng.randint(10, 30)):
        x0, y0 = rng.uniform(-0.2, 1.0) * small[0], rng.uniform(-0.2, 1.0) * small[1]
        x1, y1 = x0 + rng.uniform(0.05, 0.6) * small[0], y0 + rng.uniform(0.05, 0.6) * small[1]
        shape = rng.choice([draw.ellipse, draw.rectangle])
        shape([x0, y0, x1, y1], fill=_colour(rng))
    img = base.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 2.5))).resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(100, 300)):  # sharp detail at full resolution
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        draw.line(
            [x, y, x + rng.uniform(-80, 80), y + rng.uniform(-80, 80)], fill=_colour(rng), width=rng.randint(1, 4)
        )
    # From clean low-ISO shots to grainy high-ISO ones: ~0.1 to ~0.35 bytes/pixel at quality 90.
    amplitude = rng.uniform(0.02, 0.12)
    noise = noise_tile.point(lambda v: round(128 + (v - 128) * amplitude))
    layer = Image.new("RGB", (w, h))
    for x in range(0, w, 1024):
        for y in range(0, h, 1024):
            layer.paste(noise, (x, y))
    return ImageChops.add(img, layer, 1.0, -128)


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)


def straightforward(data: bytes, target: int) -> tuple[bytes, Image.Image]:
    """(a): full decode, exif_transpose, resize with Pillow's default resample, default JPEG."""
    img = Image.open(io.BytesIO(data))
    img.load()
    img = ImageOps.exif_transpose(img)
    img = img.resize(imaging.fit_within(*img.size, target))
    out = io.BytesIO()
    img.save(out, "JPEG")
    return out.getvalue(), img


def decode_draft(data: bytes, target: int) -> None:
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", imaging.fit_within(*img.size, target))
    img.load()


def decode_full(data: bytes, _target: int) -> None:
    Image.open(io.BytesIO(data)).load()


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    mse = sum(ImageStat.Stat(diff).sum2) / (3 * a.width * a.height)
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def cold_import_ms(runs: int) -> list[float]:
    """Handler module import in a fresh interpreter, as Lambda's init does it (boto3, Pillow)."""
    code = "import time; t = time.perf_counter(); import handler; print((time.perf_counter() - t) * 1000)"
    env = {**FUNCTION_ENV, "PATH": "/usr/bin:/bin"}
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=FUNCTION_DIR, env=env, capture_output=True, text=True, check=True
        )
        results.append(float(out.stdout.strip()))
    return results


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())


def timed(
    pipelines: dict[str, Callable[[bytes, int], Any]], corpus: list[Sample], target: int
) -> tuple[dict[str, list[float]], dict[str, list]]:
    """Seconds and results per pipeline and image; the pipelines take turns on each image, so
    drift in machine load or clock speed hits them alike."""
    seconds: dict[str, list[float]] = {name: [] for name in pipelines}
    results: dict[str, list] = {name: [] for name in pipelines}
    for sample in corpus:
        for name, fn in pipelines.items():
            start = time.perf_counter()
            results[name].append(fn(sample.data, target))
            seconds[name].append(time.perf_counter() - start)
    return seconds, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="images in the corpus")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--min-mp", type=float, default=2.0)
    parser.add_argument("--max-mp", type=float, default=12.0)
    parser.add_argument("--target-size", type=int, default=512, help="TARGET_SIZE")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG_QUALITY")
    parser.add_argument("--memory-mb", type=int, default=2048, help="Lambda memory")
    parser.add_argument("--arch", choices=sorted(LAMBDA_GB_S), default="arm64")
    parser.add_argument("--batch-size", type=int, default=50, help="images per invocation")
    parser.add_argument("--reject-rate", type=float, default=0.01, help="share of images quarantined")
    parser.add_argument("--import-runs", type=int, default=5)
    parser.add_argument("--memory", action="store_true", help="peak memory of hostile palette PNGs, old vs new")
    parser.add_argument("--memory-batch", type=int, default=8, help="images per batch for --memory")
    parser.add_argument("--old-ref", default="914ed90", help="git commit of the old preprocessing for --memory")
    parser.add_argument("--memory-child", nargs=4, metavar=("CODE", "WORKERS", "MEMORY_MB", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child, batch=args.memory_batch)
        return
    print("command:", shlex.join([sys.executable, *sys.argv]))
    if args.memory:
        memory_bench(args)
        return
    print(
        f"machine: {_cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}; "
        f"one core here ~ one Lambda vCPU (Lambda gives 1 vCPU at {LAMBDA_MB_PER_VCPU} MB)"
    )

    start = time.perf_counter()
    corpus = make_corpus(args.count, args.seed, args.min_mp, args.max_mp)
    in_bytes = sum(len(s.data) for s in corpus)
    mean_bytes = in_bytes / len(corpus)
    print(
        f"corpus: {len(corpus)} JPEGs, {sum(s.pixels for s in corpus) / len(corpus) / 1e6:.1f} MP mean, "
        f"{mean_bytes / 1e6:.2f} MB mean, {sum(s.orientation != 1 for s in corpus)} rotated by EXIF, "
        f"built in {time.perf_counter() - start:.0f} s"
    )

    limits = imaging.Limits(
        training_image_size=args.target_size, jpeg_quality=args.jpeg_quality, max_input_bytes=50 * 1024 * 1024,
        max_pixels=60_000_000, max_pixels_per_byte=1000, min_dimension=32, allowed_formats=("JPEG", "PNG", "WEBP"))
    decode_budget = budget.DecodeBudget(budget.decode_budget_bytes(args.memory_mb))
    pipelines = {
        "a": straightforward,
        "b": lambda data, _target: imaging.preprocess(data, limits, decode_budget),
        "draft": decode_draft,
        "full": decode_full,
    }
    seconds, results = timed(pipelines, corpus, args.target_size)
    t_a, t_b, t_draft, t_full = (sum(seconds[k]) for k in ("a", "b", "draft", "full"))
    out_a, out_b = results["a"], results["b"]

    # Quality: the reference is (a) before its JPEG encode (full decode + BICUBIC resize).
    # The reference encoded at (b)'s quality separates resampling loss from encoding loss.
    psnr_a, psnr_b, psnr_ab, psnr_q = [], [], [], []
    for (a_bytes, reference), b in zip(out_a, out_b, strict=False):
        a_img, b_img = Image.open(io.BytesIO(a_bytes)), Image.open(io.BytesIO(b.data))
        assert a_img.size == b_img.size == reference.size, (a_img.size, b_img.size, reference.size)
        ref_q = io.BytesIO()
        reference.save(ref_q, "JPEG", quality=args.jpeg_quality)
        psnr_a.append(psnr(a_img, reference))
        psnr_b.append(psnr(b_img, reference))
        psnr_ab.append(psnr(b_img, a_img))
        psnr_q.append(psnr(Image.open(ref_q), reference))
    out_mean_b = statistics.mean(len(b.data) for b in out_b)

    n = len(corpus)
    rows = [
        ("(a) straightforward", t_a),
        ("(b) function core", t_b),
        ("(c) decode only, draft", t_draft),
        ("    decode only, full", t_full),
    ]
    print(
        f"\nper core, single process, target {args.target_size}px, JPEG quality {args.jpeg_quality} for (b), Pillow default (75) for (a)"
    )
    print(f"{'pipeline':26} {'images/s':>9} {'MB/s in':>8} {'ms/image':>9}")
    for name, t in rows:
        print(f"{name:26} {n / t:9.1f} {in_bytes / t / 1e6:8.1f} {t / n * 1000:9.1f}")
    print(f"speedup (b) vs (a): {t_a / t_b:.2f}x   (b) vs draft-decode floor: {t_b / t_draft:.2f}x the floor's time")
    # Entropy decoding, which no scaled decode can skip, grows with compressed bytes per pixel.
    by_density = sorted(range(n), key=lambda i: len(corpus[i].data) / corpus[i].pixels)
    for part, label in enumerate(("least", "middle", "most")):
        idx = by_density[part * n // 3 : (part + 1) * n // 3]
        bpp = statistics.mean(len(corpus[i].data) / corpus[i].pixels for i in idx)
        ratio = sum(seconds["a"][i] for i in idx) / sum(seconds["b"][i] for i in idx)
        floor = sum(seconds["a"][i] for i in idx) / sum(seconds["draft"][i] for i in idx)
        print(
            f"  third with the {label:6} bytes/pixel ({bpp:.2f} B/px): (b) {ratio:.2f}x faster than (a); ceiling (a)/floor {floor:.2f}x"
        )
    print(
        f"quality, median PSNR vs reference (full decode + BICUBIC, not encoded): (a) {statistics.median(psnr_a):.1f} dB, "
        f"(b) {statistics.median(psnr_b):.1f} dB (worst {min(psnr_b):.1f}); reference encoded at quality {args.jpeg_quality}: "
        f"{statistics.median(psnr_q):.1f} dB, so draft + BILINEAR costs {statistics.median(psnr_q) - statistics.median(psnr_b):.1f} dB; "
        f"(b) vs (a) outputs: {statistics.median(psnr_ab):.1f} dB"
    )
    print(f"output: {out_mean_b / 1e3:.0f} KB mean JPEG from (b)")

    imports = cold_import_ms(args.import_runs)
    print(
        f"handler cold import: {statistics.median(imports):.0f} ms median of {len(imports)} ({', '.join(f'{x:.0f}' for x in imports)})"
    )

    print_costs(args, mean_bytes, {"(a)": t_a / n, "(b)": t_b / n})


def print_costs(args: argparse.Namespace, mean_bytes: float, seconds_per_image: dict[str, float]) -> None:
    gb = args.memory_mb / 1024
    # Below 1769 MB a function gets a fraction of a vCPU, so the same CPU work takes longer.
    slowdown = max(1.0, LAMBDA_MB_PER_VCPU / args.memory_mb)
    print(
        f"\ncost per TB of input, prices {PRICES_AS_OF}, Lambda {args.arch} {args.memory_mb} MB, batch {args.batch_size}, reject rate {args.reject_rate:.0%}"
    )
    print("  compute is CPU time measured here (one x86-64 core ~ one Lambda vCPU; Graviton per-core speed differs),")
    print("  S3/DynamoDB waits assumed overlapped by the worker threads; at 500 KB/image it is scaled by input bytes,")
    print("  since decode time tracks compressed size")
    for label, image_bytes in (("corpus mean", mean_bytes), ("nominal 500 KB", NOMINAL_IMAGE_BYTES)):
        images = 1e12 / image_bytes
        scale = image_bytes / mean_bytes
        rejected = images * args.reject_rate
        requests = {
            "Lambda requests": images / args.batch_size * LAMBDA_REQUEST,
            "S3 GET (1/image)": images * S3_GET,
            "S3 PUT (1 shard/batch)": images / args.batch_size * S3_PUT,
            "S3 COPY (quarantine)": rejected * S3_PUT,
            "SQS requests": images * SQS_REQUESTS_PER_IMAGE * SQS_REQUEST,
            "DynamoDB writes (+GSI rejects)": (images + rejected) * DDB_WRU,
            "DynamoDB dedup reads": images * 0.5 * DDB_RRU,
        }
        compute = {k: images * s * scale * slowdown * gb * LAMBDA_GB_S[args.arch] for k, s in seconds_per_image.items()}
        per_image_put = images * S3_PUT
        print(f"\n  {label}: {image_bytes / 1e3:.0f} KB/image -> {images / 1e6:.2f} M images/TB")
        for name, cost in requests.items():
            print(f"    {name:34} ${cost:9.2f}")
        req_total = sum(requests.values())
        print(
            f"    {'requests total':34} ${req_total:9.2f}   (a PUT per image instead would add ${per_image_put - requests['S3 PUT (1 shard/batch)']:.2f})"
        )
        for name, cost in compute.items():
            print(f"    {'Lambda compute ' + name:34} ${cost:9.2f}")
        kms = (images + images / args.batch_size) * KMS_REQUEST
        print(
            f"    {'(KMS, only if Bucket Key is off)':34} ${kms:9.2f}   not in the totals: enable S3 Bucket Keys on both buckets"
        )
        verdict = "exceed" if req_total > compute["(b)"] else "are below"
        print(
            f"    => request costs ${req_total:.2f} {verdict} optimized compute ${compute['(b)']:.2f} ({req_total / compute['(b)']:.1f}x); total ${req_total + compute['(b)']:.2f}/TB vs ${req_total + compute['(a)']:.2f}/TB with (a)"
        )


SIDE = 7745  # the file: 7745 x 7745 = 59.98 MP, just under the 60 MP limit


def hostile_pngs(folder: Path) -> dict[str, Path]:
    """The issue's files: 1-bit palette PNGs whose colour 0 is transparent. `flat` is the 7 KB bomb;
    `noise` holds random pixels (~8 pixels per byte, so it passes the pixels-per-byte check and is
    decoded and converted: the budget and the reduce-then-convert path at work). `rgba` is the
    costliest honest case: a smooth RGBA PNG (4 bytes per decoded pixel), where the budget admits
    fewer images at once than there are workers."""
    files = {}
    for kind in ("flat", "noise", "rgba"):
        path = folder / f"{kind}-{SIDE}.png"
        if not path.exists():
            if kind == "rgba":
                g = Image.linear_gradient("L").resize((SIDE, SIDE))
                r = Image.radial_gradient("L").resize((SIDE, SIDE))
                bands = (g, r, g.transpose(Image.Transpose.ROTATE_90), r.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
                Image.merge("RGBA", bands).save(path, "PNG")
                files[kind] = path
                continue
            if kind == "flat":
                img = Image.new("P", (SIDE, SIDE), 0)
            else:
                row_bytes = (SIDE + 7) // 8
                bits = Image.frombytes("1", (SIDE, SIDE), random.Random(7).randbytes(row_bytes * SIDE))
                img = Image.frombytes("P", (SIDE, SIDE), bits.convert("L").point(lambda v: 1 if v else 0).tobytes())
            img.putpalette([255, 0, 0, 0, 0, 255])
            img.save(path, "PNG", bits=1, transparency=0)
        files[kind] = path
    return files


def deployed_sizing() -> tuple[int, int]:
    """WORKERS and the memory size of the ingest function in the dev stack's offline plan."""
    sys.path.insert(0, str(REPO))
    from offline import runner

    plan = runner.run(runner.projects()["ml-pipeline"], "dev")
    function = plan.one("aws:lambda/function:Function", "ingest-fn").inputs
    return int(function["environment"]["variables"][environment.WORKERS]), int(function["memorySize"])


def memory_bench(args: argparse.Namespace) -> None:
    import tempfile

    workers, memory_mb = deployed_sizing()
    limit_mb = memory_mb * 0.7
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old = folder / "old"
        old.mkdir()
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{args.old_ref}:functions/image_ingest/imaging.py"],
                                capture_output=True, text=True, check=True).stdout
        (old / "imaging.py").write_text(source)
        files = hostile_pngs(folder)
        print(f"deployed (dev stack plan): {workers} workers, {memory_mb} MB; 70% = {limit_mb:.0f} MB; "
              f"batch of {args.memory_batch} per run (the peak depends on the workers, not the batch length)")
        for kind, path in files.items():
            what = "RGBA PNG, smooth" if kind == "rgba" else "1-bit palette PNG, colour 0 transparent"
            print(f"  {kind}: {SIDE}x{SIDE} {what}, {path.stat().st_size:,} bytes")
        print("  new* = the function with maxImagePixelsPerByte at its maximum (100000): the budget alone")
        print(f"\n{'file':6} {'code':4} {'peak RSS MB':>12} {'baseline MB':>12} {'< 70%?':>7} {'seconds':>8}  outcomes"
              f"  (new: decode budget {budget.decode_budget_bytes(memory_mb) // budget.MIB} MB)")
        for kind, path in files.items():
            for code in ("old", "new", "new*") if kind == "flat" else ("old", "new"):
                out = subprocess.run(
                    [sys.executable, __file__, "--memory-batch", str(args.memory_batch), "--memory-child", code,
                     str(workers), str(memory_mb), str(path)],
                    capture_output=True, text=True, env={**os.environ, "OLD_IMAGING_DIR": str(old)})
                if out.returncode != 0:
                    print(f"{kind:6} {code:4} failed: {out.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                ok = "yes" if r["peak_mb"] < limit_mb else "NO"
                print(f"{kind:6} {code:4} {r['peak_mb']:12.0f} {r['baseline_mb']:12.0f} {ok:>7} {r['seconds']:8.1f}  "
                      f"{r['outcomes']}" + (f", budget peak {r['budget_peak_mb']:.0f} MB" if "budget_peak_mb" in r else ""))


def _high_water_mb() -> float:
    """Peak resident memory of this process (VmHWM). Not getrusage's ru_maxrss: Linux carries that
    over exec from the forking parent, here the offline plan's process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def memory_child(code: str, workers: str, memory_mb: str, file: str, *, batch: int) -> None:
    """One batch in this (fresh) process: the handler's imports, then `workers` threads over `batch`
    copies of the file, each read inside its thread as the handler reads each S3 object."""
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor

    import boto3  # noqa: F401  (the handler's baseline)

    if code == "old":
        sys.path.insert(0, os.environ["OLD_IMAGING_DIR"])
        sys.modules.pop("imaging", None)
        import imaging as old_imaging

        def run(path: str) -> str:
            try:
                old_imaging.preprocess(Path(path).read_bytes(), old_imaging.Limits())
                return "processed"
            except old_imaging.ImageRejected as rejected:
                return rejected.reason
    else:
        os.environ.update({**FUNCTION_ENV, environment.WORKERS: workers, environment.LAMBDA_MEMORY_MB: memory_mb})
        if code == "new*":
            os.environ[environment.MAX_PIXELS_PER_BYTE] = "100000"
        import handler

        def run(path: str) -> str:
            try:
                handler.imaging.preprocess(Path(path).read_bytes(), handler.SETTINGS.limits, handler.BUDGET)
                return "processed"
            except handler.imaging.ImageRejected as rejected:
                return rejected.reason

    baseline = _high_water_mb()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=int(workers)) as pool:
        outcomes = Counter(pool.map(run, [file] * batch))
    seconds = time.perf_counter() - start
    result = {"peak_mb": _high_water_mb(), "baseline_mb": baseline, "seconds": seconds, "outcomes": dict(outcomes)}
    if code != "old":
        result["budget_peak_mb"] = handler.BUDGET.peak / budget.MIB
    print(json.dumps(result))


if __name__ == "__main__":
    main()
