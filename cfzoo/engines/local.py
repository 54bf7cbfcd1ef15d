"""The ``local`` engine: every cell and every image in this process, one after the other (memory bounded by one
decoded image and one batch of patches)."""

from __future__ import annotations

from cfzoo.engines.registry import Engine
from cfzoo.experiments.cells import RUN_HERE
from cfzoo.ops.scan import scan_rows


class LocalEngine(Engine):
    name = "local"
    summary = "here, one after the other"

    def cell_runner(self, on_progress=None):
        return RUN_HERE

    def map_images(self, pending, output, settings, selection, workers, progress) -> int:
        failed = 0
        for start in range(0, len(pending), settings.images_per_part):
            rows = []
            for done, path in enumerate(pending[start : start + settings.images_per_part], start + 1):
                image_rows = scan_rows(path, selection.detectors, settings.stride, settings.batch_size)
                failed += image_rows[0]["error"] is not None
                rows.extend(image_rows)
                progress(done, len(pending))
            output.write(rows)
        return failed
