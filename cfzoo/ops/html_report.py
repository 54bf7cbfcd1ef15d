"""``cfzoo detect --report``: one self-contained HTML page of a run, readable without a server.

The page holds the rule, the versions and every detector's id, then per image a thumbnail, the verdict table
(verdict, share of patches above the threshold, mean probability) and every detector's heatmap, all inline as
JPEG data. It is written while the images are analysed, so memory does not grow with their number, into a hidden
file beside the destination that takes the destination's name only when the run completes (:meth:`close`).
Text from the inputs (file names, errors) is HTML-escaped by the template (``templates/detect_report.html.j2``).
"""

from __future__ import annotations

import base64
import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cfzoo._version import __version__
from cfzoo.errors import CfzooError, option
from cfzoo.files import WriteError, check_writable, remove_stale_temporaries, temporary_name
from cfzoo.ops.conclusion import Concluder
from cfzoo.ops.detect import (
    HEATMAP_SCALE,
    RULE,
    DetectSettings,
    heatmap_caption,
    heatmap_legend,
    model_sha256,
)
from cfzoo.patches import PATCH_SIZE
from cfzoo.reports import html_templates
from cfzoo.results import DetectorVerdict, ImageResult
from cfzoo.zoo.catalog import DetectorSelection
from cfzoo.zoo.runtime import onnxruntime_module

#: Longest side of the thumbnails and heatmaps in the page, pixels, and their JPEG quality: a view, not evidence
#: (``--heatmap`` writes the lossless PNGs).
REPORT_IMAGE_SIDE = 320
REPORT_JPEG_QUALITY = 85


def check_report_destination(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if the report can be written there, checked before any work."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise CfzooError(f"{option('report')} {path} must end in .html")
    if path.is_dir():
        raise CfzooError(f"{option('report')} {path} is a folder; give a file name ending in .html")
    return check_writable(path, option("report"))


class DetectionHtmlReport:
    """Use as a context manager: :meth:`add_heatmap` while an image is analysed, :meth:`add` once it is; the page
    replaces ``path`` when the block ends without an error, and nothing is left behind when it does not."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        selection: DetectorSelection,
        settings: DetectSettings,
        concluder: Concluder | None = None,
        conclusion_skipped: str | None = None,
    ):
        self.path = check_report_destination(path)
        self.selection, self.settings = selection, settings
        self.conclusion_model = None if concluder is None else concluder.info()
        self.conclusion_skipped = conclusion_skipped
        self.staging = temporary_name(self.path, "partial")
        remove_stale_temporaries(self.path)
        self.heatmaps: dict[tuple[str, str], tuple[str, str]] = {}  # (task, column) -> (caption, JPEG base64)
        self.thumbnail = ""
        self.analysed = self.failed = 0
        # (number, path, tasks called manipulated or uncertain, the conclusion's line)
        self.flagged: list[tuple[int, str, list[str], str]] = []  # some detector calls it manipulated
        self.uncertain: list[tuple[int, str, list[str], str]] = []  # no manipulated verdict, some uncertain
        self.conclusions: dict[str, int] = {}  # how many images got each conclusion (its class, or its status)
        self.template = html_templates("cfzoo.ops").get_template("detect_report.html.j2").module

    def _write(self, text: str) -> None:
        """Write to the staging page; a failure (a full disk) names the page the user asked for."""
        try:
            self.stream.write(text)
        except OSError as error:
            raise WriteError(self.path, error.strerror or str(error)) from None

    def __enter__(self) -> DetectionHtmlReport:
        try:
            self.stream = open(self.staging, "w", encoding="utf-8")
        except OSError as error:
            raise WriteError(self.path, error.strerror or str(error)) from None
        providers = list(
            dict.fromkeys(provider for detector in self.selection.detectors for provider in detector.providers)
        )
        self._write(
            str(
                self.template.head(
                    title="cfzoo detect report",
                    started=_now(),
                    versions={"cfzoo": __version__, "onnxruntime": onnxruntime_module().__version__},
                    settings={
                        "patch_size": PATCH_SIZE,
                        "stride": self.settings.stride,
                        "batch_size": self.settings.batch_size,
                        "providers": providers,
                        "rule": RULE,
                    },
                    detectors=[
                        {
                            "model": d.entry.id,
                            "family": d.entry.family,
                            "task": d.entry.task,
                            "threshold": float(d.threshold),
                            "source": d.resolved.source,
                            "sha256": model_sha256(d),
                        }
                        for d in self.selection.detectors
                    ],
                    conclusion_model=self.conclusion_model,
                    skipped=[
                        *self.selection.skipped,
                        *self.selection.left_out,
                        *([self.conclusion_skipped] if self.conclusion_skipped else []),
                    ],
                    legend=_png_base64(heatmap_legend()),
                    scale=HEATMAP_SCALE,
                )
            )
        )
        return self

    def add_image(self, path: Path, pixels: np.ndarray) -> None:
        """The image being analysed, as decoded (the ``on_image`` of :func:`cfzoo.ops.detect.detect_files`)."""
        self.thumbnail = _jpeg_base64(pixels)

    def add_heatmap(self, path: Path, verdict: DetectorVerdict, heatmap: np.ndarray) -> None:
        """One detector's heatmap of the image being analysed (the ``on_heatmap`` of :func:`cfzoo.ops.detect.detect_files`)."""
        self.heatmaps[(verdict.task, verdict.column)] = (heatmap_caption(verdict), _jpeg_base64(heatmap))

    def add(self, report: ImageResult) -> None:
        """An analysed image: its section, with the thumbnail and heatmaps given since the last one, laid out as its
        verdicts are: a row per task, a column per family."""
        (heatmaps, self.heatmaps), (thumbnail, self.thumbnail) = (self.heatmaps, {}), (self.thumbnail, "")
        if report.ok:
            self.analysed += 1
        else:
            self.failed += 1
        number = self.analysed + self.failed
        verdicts = {(verdict.task, verdict.column): verdict for verdict in report.results}
        columns, tasks = self.selection.families, self.selection.tasks
        rows = [(task, [verdicts.get((task, column)) for column in columns]) for task in tasks]
        grid = [(task, [heatmaps.get((task, column)) for column in columns]) for task in tasks]
        called = {
            kind: sorted({v.task for v in report.results if v.verdict == kind}) for kind in ("manipulated", "uncertain")
        }
        conclusion = report.conclusion
        if conclusion is not None:
            named = conclusion.most_likely if conclusion.status == "confident" else conclusion.status
            self.conclusions[named] = self.conclusions.get(named, 0) + 1
        line = "" if conclusion is None else conclusion.text
        if called["manipulated"]:
            self.flagged.append((number, report.path, called["manipulated"], line))
        elif called["uncertain"]:
            self.uncertain.append((number, report.path, called["uncertain"], line))
        self._write(str(self.template.image(number, report, columns, rows, thumbnail, grid)))

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if kind is None:
                self._write(
                    str(
                        self.template.tail(
                            self.analysed,
                            self.failed,
                            self.flagged,
                            self.uncertain,
                            sorted(self.conclusions.items(), key=lambda item: -item[1]),
                            written=_now(),
                        )
                    )
                )
            try:
                self.stream.close()
                if kind is None:
                    os.replace(self.staging, self.path)
            except OSError as failure:  # the last buffered bytes are written on close
                if kind is None:
                    raise WriteError(self.path, failure.strerror or str(failure)) from None
        finally:
            self.staging.unlink(missing_ok=True)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z")


def _png_base64(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _jpeg_base64(pixels: np.ndarray) -> str:
    image = Image.fromarray(pixels)
    image.thumbnail((REPORT_IMAGE_SIDE, REPORT_IMAGE_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=REPORT_JPEG_QUALITY)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
