"""Benchmark: normalising a 12 MP phone JPEG, ours (reduced-scale decode) against a naive full decode.

Run: .venv/bin/python bench/image_normalise.py [--runs 15]

For each input photo it prints, measured side by side in one run (rounds interleaved), the median time,
the output bytes (Plant.id 1500 px and Pl@ntNet 1280 px renditions) and the peak memory (RSS growth,
each variant in a fresh process) of both variants, and their ratios. Goals (issue 4): at least 3x faster
than naive, under 80 ms, output under 600 KB.
"""

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")

import django  # noqa: E402

django.setup()

from PIL import Image, ImageFilter, ImageOps  # noqa: E402

from apps.plant_identification.images import image_normalise, provider_long_sides  # noqa: E402
from tests.images import jpeg_with_exif  # noqa: E402

SIZE = (4032, 3024)


def typical_photo() -> Image.Image:
    """A leaf filling the lower part of the frame (fine texture) over a soft, out-of-focus background."""
    texture = Image.merge("RGB", [Image.effect_noise(SIZE, sigma) for sigma in (40, 60, 30)])
    texture = texture.filter(ImageFilter.GaussianBlur(0.6))
    leaf = Image.blend(Image.new("RGB", SIZE, (50, 130, 45)), texture, 0.35)
    background = Image.linear_gradient("L").resize(SIZE).convert("RGB")
    background = Image.blend(Image.new("RGB", SIZE, (170, 190, 210)), background, 0.3)
    mask = Image.linear_gradient("L").resize(SIZE).point(lambda v: 255 if v > 70 else 0)
    return Image.composite(leaf, background, mask)


def noisy_photo() -> Image.Image:
    """Worst case: sensor-like noise over the whole frame (high entropy: slowest to decode)."""
    noise = Image.merge("RGB", [Image.effect_noise(SIZE, sigma) for sigma in (30, 45, 25)])
    gradient = Image.linear_gradient("L").resize(SIZE).convert("RGB")
    return Image.blend(Image.blend(Image.new("RGB", SIZE, (40, 120, 50)), gradient, 0.35), noise, 0.25)


def naive(data: bytes) -> list[bytes]:
    """A first version: decode every pixel, turn upright, resize for each provider, encode."""
    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image).convert("RGB")
    outputs = []
    for side in sorted(set(provider_long_sides().values()), reverse=True):
        resized = upright.copy()
        resized.thumbnail((side, side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        resized.save(buffer, "JPEG", quality=85)
        outputs.append(buffer.getvalue())
    return outputs


def ours(data: bytes) -> list[bytes]:
    return sorted(set(image_normalise(io.BytesIO(data)).renditions.values()), key=len, reverse=True)


VARIANTS = {"ours": ours, "naive": naive}


def timed(name: str, data: bytes, runs: int) -> tuple[list[float], list[int]]:
    VARIANTS[name](data)  # warm-up
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        outputs = VARIANTS[name](data)
        timings.append(time.perf_counter() - started)
    return timings, [len(output) for output in outputs]


def peak_rss_growth_mib(name: str, photo: Path) -> float:
    """Peak RSS the variant adds to a fresh process that already holds the photo's bytes."""
    result = subprocess.run(
        [sys.executable, __file__, "--measure", name, str(photo)], capture_output=True, text=True, check=True
    )
    return float(result.stdout.split()[-1])


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def measure_one(name: str, photo: str) -> None:
    data = Path(photo).read_bytes()
    # ru_maxrss survives exec (it would report the parent's peak), so reset the high-water mark instead.
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    VARIANTS[name](data)
    print((_status_kib("VmHWM") - before) / 1024)


def bench(label: str, photo: Image.Image, runs: int, workdir: Path) -> None:
    data = jpeg_with_exif(photo, orientation=6, gps=True)
    path = workdir / f"{label}.jpg"
    path.write_bytes(data)
    print(f"\n{label}: {SIZE[0]}x{SIZE[1]} JPEG q90, {len(data) / 1e6:.1f} MB, EXIF orientation 6 + GPS")
    timings = {name: [] for name in VARIANTS}
    sizes = {}
    for _ in range(3):  # interleaved rounds: both variants see the same machine noise
        for name in VARIANTS:
            round_timings, sizes[name] = timed(name, data, runs)
            timings[name] += round_timings
    medians = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    peaks = {name: peak_rss_growth_mib(name, path) for name in VARIANTS}
    print(f"  {'variant':8} {'median ms':>10} {'output bytes (1500 px, 1280 px)':>34} {'peak RSS +MiB':>14}")
    for name in VARIANTS:
        print(f"  {name:8} {medians[name]:10.1f} {sizes[name]!s:>34} {peaks[name]:14.1f}")
    print(f"  speed-up naive/ours: {medians['naive'] / medians['ours']:.1f}x (goal >= 3x)")
    print(f"  ours median: {medians['ours']:.1f} ms (goal < 80 ms)")
    print(f"  ours largest output: {max(sizes['ours']) / 1000:.0f} KB (goal < 600 KB)")
    print(f"  peak memory naive/ours: {peaks['naive'] / max(peaks['ours'], 0.1):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per round (3 rounds)")
    parser.add_argument("--measure", nargs=2, metavar=("VARIANT", "PHOTO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_one(*args.measure)
        return
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; Pillow {Image.__version__}")
    with tempfile.TemporaryDirectory() as workdir:
        bench("typical phone photo", typical_photo(), args.runs, Path(workdir))
        bench("worst case (noise everywhere)", noisy_photo(), args.runs, Path(workdir))


if __name__ == "__main__":
    main()
