"""Forensic triage of whole images: zoo detectors on a grid of 128x128 patches, aggregated per image.

Patch grid: :func:`cfzoo.patches.patch_grid`.

Aggregation (:func:`summarise`): each detector gives every patch the probability that it is manipulated
(softmax class 1) and calls it manipulated above the detector's threshold. The image's verdict is
"manipulated" when more than half of its patches are called manipulated (a majority vote; the same as
the median patch probability exceeding the threshold). A majority is robust where a mean is not: a few
patches where the detector fails (flat sky, saturated highlights, text) cannot outvote the rest, and
one very confident patch cannot carry the image. The mean probability is reported beside it.

Memory: an image is decoded once; patches are cut ``batch_size`` at a time in raster order (row by row)
and every selected detector scores each batch before the next is cut, so memory beyond the decoded image
is bounded by the batch, not by the number of patches.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cfzoo.callbacks import ProgressCallback
from cfzoo.errors import ImageReadError
from cfzoo.files import file_sha256
from cfzoo.images import IMAGE_SUFFIXES, LUMA_WEIGHTS, list_images, load_image, save_png
from cfzoo.ops.conclusion import Concluder, concluder_for
from cfzoo.ops.scoring import DEFAULT_BATCH_SIZE, check_batch_size, flagged, score_positions
from cfzoo.patches import (
    DEFAULT_STRIDE,
    PATCH_SIZE,
    ImageTooSmallError,
    check_fits,
    check_stride,
    patch_grid,
)
from cfzoo.results import (
    DetectionDocument,
    DetectionSettings,
    DetectorInfo,
    DetectorVerdict,
    ImageResult,
    OtherTaskFlag,
)
from cfzoo.zoo.catalog import DetectorSelection, select_detectors
from cfzoo.zoo.registry import STANDARD_VARIANT, ModelEntry, check_variant
from cfzoo.zoo.runtime import Detector

#: An image is called manipulated when more than this share of its patches is.
MAJORITY = 0.5
#: Shares of patches above the threshold (inclusive) for which a verdict is "uncertain": the middle half of the
#: range, fixed before it was measured (docs/detect.md, tools/verdict_band.py), not fitted to any camera.
UNCERTAIN_BAND = (0.25, 0.75)
#: Longest side of a heatmap PNG, in pixels (larger images are shown reduced).
HEATMAP_MAX_SIDE = 1024
#: Heatmap colours, two ramps that break at the detector's threshold so that every patch reads as
#: below (cold) or above (warm) it: probability 0 -> dark blue ... just below the threshold -> light
#: cyan; just above it -> yellow ... 1 -> red.
HEATMAP_BELOW = ((20, 50, 190), (110, 220, 255))
HEATMAP_ABOVE = ((255, 215, 0), (230, 0, 0))
#: Heatmap background: the image in gray, at this brightness, under a colour layer of this opacity.
HEATMAP_BRIGHTNESS = 0.6
HEATMAP_OPACITY = 0.55
RULE = (
    f"manipulated when more than {UNCERTAIN_BAND[1]:.0%} of the patches have a probability above the detector's threshold, "
    f"pristine when fewer than {UNCERTAIN_BAND[0]:.0%}, uncertain in between"
)


# --- inputs ----------------------------------------------------------------------------------


def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; a folder becomes its images (:func:`~cfzoo.images.list_images`: by suffix, not
    recursive, sorted). A folder without images, and a path that does not exist, are kept as they are so that
    :func:`detect_image` reports them as failures. Repeated paths are analysed once."""
    expanded: list[Path] = []
    for path in map(Path, paths):
        try:
            images = list_images(path) if path.is_dir() else []
        except OSError:  # an unlistable folder fails on its own in detect_image, not the whole run
            images = []
        expanded.extend(images or [path])
    return list(dict.fromkeys(expanded))


# --- detectors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectSettings:
    """What ``cfzoo detect`` runs: detector ``families``, ``tasks`` and ``models`` (empty: every one available; see
    :func:`select_detectors`), the patch ``stride``, patches per model run, onnxruntime ``providers``, and whether
    to draw each image's ``conclusion`` (:mod:`cfzoo.ops.conclusion`). Built only when valid: a bad stride or batch
    size is a one-line CfzooError here, before any work."""

    families: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    stride: int = DEFAULT_STRIDE
    batch_size: int = DEFAULT_BATCH_SIZE
    providers: str = "auto"
    conclusion: bool = True
    #: Which of each family x task's detectors (:data:`cfzoo.zoo.registry.VARIANTS`).
    variant: str = STANDARD_VARIANT

    def __post_init__(self) -> None:
        for name in ("families", "tasks", "models"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_variant(self.variant)
        check_stride(self.stride)
        check_batch_size(self.batch_size)

    def select(self, providers: str | None = None) -> DetectorSelection:
        """Load the detectors (``providers`` overrides the settings', as a worker with a GPU does)."""
        return select_detectors(
            self.families or None, self.tasks or None, providers or self.providers, self.models, self.variant
        )

    def detectors(self, providers: str | None = None) -> list[Detector]:
        return self.select(providers).detectors

    def concluder(self, selection: DetectorSelection) -> tuple[Concluder | None, str | None]:
        """The conclusion model for ``selection``'s detectors, or None and why not (None, None when not asked for)."""
        return concluder_for(selection.detectors) if self.conclusion else (None, None)


# --- verdicts ---------------------------------------------------------------------------------


#: Verdicts from least to most suspicious.
VERDICTS = ("pristine", "uncertain", "manipulated")


def verdict_of(flagged_share: float) -> str:
    """The image's verdict from the share of its patches above the detector's threshold (:data:`RULE`)."""
    low, high = UNCERTAIN_BAND
    if low <= flagged_share <= high:
        return "uncertain"
    return "manipulated" if flagged_share > MAJORITY else "pristine"


def verdict_change(entry: ModelEntry, before: np.ndarray, after: np.ndarray) -> OtherTaskFlag:
    """One detector's flagged share (percent) and verdict on an image before and after a change (an attack, a
    restoration), from its patch decisions ``before`` and ``after``."""
    shares = 100.0 * before.mean(), 100.0 * after.mean()
    verdicts = [verdict_of(share / 100.0) for share in shares]
    return OtherTaskFlag(
        model=entry.id,
        task=entry.task,
        before=round(shares[0], 4),
        after=round(shares[1], 4),
        verdict_before=verdicts[0],
        verdict_after=verdicts[1],
    )


def summarise(entry: ModelEntry, probabilities: np.ndarray) -> DetectorVerdict:
    """Aggregate one model's patch probabilities into the image's verdict (see the module's rule)."""
    threshold = entry.probability_threshold
    flagged_share = float(np.mean(flagged(probabilities, threshold)))
    return DetectorVerdict(
        model=entry.id,
        family=entry.family,
        task=entry.task,
        threshold=float(threshold),
        mean_probability=float(np.mean(probabilities)),
        flagged_share=flagged_share,
        verdict=verdict_of(flagged_share),
        heatmap=None,
        manipulated=flagged_share > MAJORITY,
        column=entry.column,
    )


# --- images ----------------------------------------------------------------------------------


def failed_image(path: Path, error: str) -> ImageResult:
    """The result of an input that could not be analysed: its one-line ``error``, and its sha256 if it is a file."""
    return ImageResult(
        path=str(path),
        sha256=content_sha256(path),
        ok=False,
        error=error,
        width=None,
        height=None,
        patches=0,
        notes=[],
        results=[],
    )


def content_sha256(path: Path) -> str | None:
    """The sha256 of a regular file's bytes (the evidence a report names); None for anything else (a pipe would
    block, a device never end) or a file that cannot be read."""
    try:
        return file_sha256(path) if Path(path).is_file() else None
    except OSError:
        return None


def model_sha256(detector: Detector) -> str:
    """The detector file's sha256 (its version): the registry's where it lists the file, else hashed once."""
    listed = detector.entry.files.get("detector")
    return listed.sha256 if listed is not None else _hashed(str(detector.path))


@functools.cache
def _hashed(path: str) -> str:
    return file_sha256(Path(path))


#: Takes each detector's heatmap of an image (:func:`render_heatmap`, without its caption); returns the PNG it wrote, if any.
HeatmapSink = Callable[[DetectorVerdict, np.ndarray], Path | None]


def detect_image(
    path: str | os.PathLike[str],
    detectors: Sequence[Detector],
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    heatmaps: HeatmapSink | None = None,
    on_pixels: Callable[[np.ndarray], None] | None = None,
    on_progress: ProgressCallback | None = None,
    concluder: Concluder | None = None,
) -> ImageResult:
    """Run every detector over one image file. Problems with the file (unreadable, too small, a folder
    without images) come back as the report's ``error``; ``heatmaps``, when given, gets each detector's
    heatmap, and the verdict records the PNG it says it wrote; ``on_pixels`` gets the decoded image;
    ``on_progress(done, total)`` hears of the patches scored; ``concluder`` draws the image's conclusion."""
    path = Path(path)
    if path.is_dir():
        try:
            list_images(path)
        except OSError as error:
            return failed_image(
                path, f"{path}: folder cannot be listed ({error.strerror}); make it readable for this user"
            )
        return failed_image(
            path, f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); check the path"
        )
    try:
        image = load_image(path)
        scored = score_image(image.pixels, detectors, stride, batch_size, source=path, on_progress=on_progress)
        if on_pixels is not None:
            on_pixels(image.pixels)
    except (ImageReadError, ImageTooSmallError) as error:
        return failed_image(path, str(error))
    verdicts = []
    for verdict, row in zip(scored.verdicts, scored.probabilities):
        if heatmaps is not None:
            written = heatmaps(verdict, render_heatmap(image.pixels, scored.positions, row, verdict, captioned=False))
            verdict = verdict if written is None else verdict.model_copy(update={"heatmap": str(written)})
        verdicts.append(verdict)
    return ImageResult(
        path=str(path),
        sha256=content_sha256(path),
        ok=True,
        error=None,
        width=image.width,
        height=image.height,
        patches=len(scored.positions),
        notes=list(image.notes),
        conclusion=None if concluder is None else concluder.conclude(scored.verdicts),
        results=verdicts,
    )


@dataclass(frozen=True)
class ScoredImage:
    positions: np.ndarray  # patch corners [K, 2]
    probabilities: np.ndarray  # [len(detectors), K]
    verdicts: list[DetectorVerdict]


def score_image(
    pixels: np.ndarray,
    detectors: Sequence[Detector],
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    source: str | os.PathLike[str] = "the image",
    on_progress: ProgressCallback | None = None,
) -> ScoredImage:
    """Every detector's patch probabilities and verdict on an H x W x 3 uint8 image (ImageTooSmallError below 128);
    ``on_progress(done, total)`` after each batch of patches."""
    check_fits(pixels.shape[0], pixels.shape[1], source=source)
    positions = patch_grid(pixels.shape[0], pixels.shape[1], stride)
    probabilities = score_positions(pixels, detectors, positions, batch_size, on_progress)
    return ScoredImage(
        positions, probabilities, [summarise(detector.entry, row) for detector, row in zip(detectors, probabilities)]
    )


def detect_files(
    paths: Sequence[Path],
    detectors: Sequence[Detector],
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    heatmap_dir: str | os.PathLike[str] | None = None,
    on_heatmap: Callable[[Path, DetectorVerdict, np.ndarray], None] | None = None,
    on_image: Callable[[Path, np.ndarray], None] | None = None,
    on_patches: Callable[[Path], ProgressCallback | None] | None = None,
    concluder: Concluder | None = None,
) -> Iterator[ImageResult]:
    """:func:`detect_image` over ``paths`` (see :func:`expand_inputs`), one report per path, in order.

    Heatmaps go to ``heatmap_dir/<image stem>-<task>-<family>.png``; a stem seen before gets ``-2``,
    ``-3``... in input order, so two inputs never share a heatmap. ``on_heatmap(path, verdict, heatmap)``
    also gets each one, and ``on_image(path, pixels)`` each analysed image (the HTML report's);
    ``on_patches(path)`` gives the progress callback of that image's patches (a bar per image); ``concluder``
    draws each image's conclusion.
    """
    check_stride(stride)
    check_batch_size(batch_size)
    stems: dict[str, int] = {}
    for path in paths:
        folder = None
        if heatmap_dir is not None:
            stems[path.stem] = stems.get(path.stem, 0) + 1
            stem = path.stem if stems[path.stem] == 1 else f"{path.stem}-{stems[path.stem]}"
            folder = (Path(heatmap_dir), stem)
        sink = None if folder is None and on_heatmap is None else _heatmap_sink(path, folder, on_heatmap)
        pixels_of = None if on_image is None else functools.partial(on_image, path)
        progress = None if on_patches is None else on_patches(path)
        yield detect_image(path, detectors, stride, batch_size, sink, pixels_of, progress, concluder)


def _heatmap_sink(path: Path, folder: tuple[Path, str] | None, on_heatmap) -> HeatmapSink:
    def sink(verdict: DetectorVerdict, heatmap: np.ndarray) -> Path | None:
        if on_heatmap is not None:
            on_heatmap(path, verdict, heatmap)
        if folder is None:
            return None
        directory, stem = folder
        return save_png(with_caption(heatmap, verdict), directory / f"{stem}-{verdict.task}-{verdict.column}.png")

    return sink


def detection_document(
    reports: Sequence[ImageResult],
    selection: DetectorSelection,
    settings: DetectSettings,
    concluder: Concluder | None = None,
    conclusion_skipped: str | None = None,
) -> DetectionDocument:
    """The ``cfzoo detect --json`` document (docs/detect.md; schema docs/schemas/detection.schema.json)."""
    providers = list(dict.fromkeys(provider for detector in selection.detectors for provider in detector.providers))
    return DetectionDocument(
        settings=DetectionSettings(
            patch_size=PATCH_SIZE,
            stride=settings.stride,
            batch_size=settings.batch_size,
            providers=providers,
            rule=RULE,
            variant=settings.variant,
        ),
        detectors=[
            DetectorInfo(
                model=d.entry.id,
                family=d.entry.family,
                task=d.entry.task,
                threshold=float(d.threshold),
                source=d.resolved.source,
                sha256=model_sha256(d),
            )
            for d in selection.detectors
        ],
        conclusion_model=None if concluder is None else concluder.info(),
        skipped=[*selection.skipped, *([conclusion_skipped] if conclusion_skipped else [])],
        images=list(reports),
        failed=sum(not report.ok for report in reports),
    )


# --- heatmaps --------------------------------------------------------------------------------


def probability_colours(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """RGB float colours [..., 3] of patch probabilities (see :data:`HEATMAP_BELOW`, :data:`HEATMAP_ABOVE`)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)[..., None]
    threshold = min(max(threshold, 1e-6), 1 - 1e-6)
    (cold, cool), (warm, hot) = (np.array(ramp, dtype=np.float64) for ramp in (HEATMAP_BELOW, HEATMAP_ABOVE))
    below = cold + (cool - cold) * np.clip(probabilities / threshold, 0, 1)
    above = warm + (hot - warm) * np.clip((probabilities - threshold) / (1 - threshold), 0, 1)
    return np.where(probabilities > threshold, above, below)


def heatmap_legend(width: int = 256, height: int = 14) -> np.ndarray:
    """The heatmaps' one colour scale as an RGB uint8 bar: from probability 0 (left) to the detector's threshold (the
    middle) in the blue ramp, and from the threshold to 1 (right) in the red one, as :func:`probability_colours`
    paints it for any threshold."""
    colours = probability_colours(np.linspace(0.0, 1.0, width), 0.5)
    return np.repeat(np.clip(np.rint(colours), 0, 255).astype(np.uint8)[None], height, axis=0)


#: What the legend says about the scale.
HEATMAP_SCALE = (
    "each patch is painted by its probability of 'manipulated' over the image in dimmed gray: blue below the "
    "detector's threshold (dark at 0, light just below), yellow to red above it (yellow just above, red at 1); "
    "where patches overlap, their mean"
)


def render_heatmap(
    pixels: np.ndarray,
    positions: np.ndarray,
    probabilities: np.ndarray,
    verdict: DetectorVerdict,
    captioned: bool = True,
) -> np.ndarray:
    """The image in dimmed gray under a colour per patch (:func:`probability_colours`; where patches
    overlap, their mean probability), reduced to :data:`HEATMAP_MAX_SIDE`, with a one-line caption (:func:`with_caption`)."""
    height, width = pixels.shape[:2]
    scale = min(1.0, HEATMAP_MAX_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    reduced = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX), dtype=np.float64)
    gray = reduced @ np.array(LUMA_WEIGHTS) * HEATMAP_BRIGHTNESS
    total = np.zeros((size[1], size[0]))
    count = np.zeros_like(total)
    for (row, column), probability in zip(positions, probabilities):
        top, left = round(row * scale), round(column * scale)
        bottom, right = round((row + PATCH_SIZE) * scale), round((column + PATCH_SIZE) * scale)
        total[top:bottom, left:right] += probability
        count[top:bottom, left:right] += 1
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    colours = probability_colours(mean, verdict.threshold)
    blended = gray[..., None] * (1 - HEATMAP_OPACITY) + colours * HEATMAP_OPACITY
    blended = np.where(count[..., None] > 0, blended, gray[..., None])
    heatmap = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return with_caption(heatmap, verdict) if captioned else heatmap


def heatmap_caption(verdict: DetectorVerdict) -> str:
    return (
        f"{verdict.task} / {verdict.column}: {verdict.verdict} "
        f"({verdict.flagged_share:.0%} of patches above {verdict.threshold:.2f}, mean {verdict.mean_probability:.2f})"
    )


def with_caption(image: np.ndarray, verdict: DetectorVerdict) -> np.ndarray:
    """``image`` under a black strip holding the verdict's caption; the canvas widens (black on the right) for a narrow image."""
    text = heatmap_caption(verdict)
    font_size, margin = 14, 5
    font = ImageFont.load_default(size=font_size)
    width = max(image.shape[1], int(np.ceil(font.getlength(text))) + 2 * margin)
    canvas = Image.new("RGB", (width, image.shape[0] + font_size + 2 * margin), (0, 0, 0))
    canvas.paste(Image.fromarray(image), (0, font_size + 2 * margin))
    ImageDraw.Draw(canvas).text((margin, margin - 1), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)
