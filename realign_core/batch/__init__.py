"""Batch generation for scenes and motion libraries: ``realign batch JOBS.csv --out DIR [--ray ...]``.

* ``jobs``: the jobs CSV (columns, defaults, errors naming file/line/row/column);
* ``plan``: rows -> the server's batches of compatible motions (``server.jobs.JobQueue``), model hash;
* ``manifest``: the output folder (motion files + ``manifest.jsonl``) and what is done (resume);
* ``runner``: ``run_batch`` in this process, or through ``ray_runner`` (Ray Data actor pool);
* ``bench``: motions/s of a local run against a Ray run of the same rows.

Ray is optional (``pip install .[ray]``) and imported only by ``ray_runner`` when a run asks for it.
See docs/scale.md.
"""
from __future__ import annotations

from .jobs import COLUMNS, JobRow, JobsError, read_jobs
from .manifest import MANIFEST, Manifest, read_manifest
from .runner import BatchConfig, BatchSummary, run_batch

__all__ = ["COLUMNS", "MANIFEST", "BatchConfig", "BatchSummary", "JobRow", "JobsError", "Manifest", "read_jobs",
           "read_manifest", "run_batch"]
