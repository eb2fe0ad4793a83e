"""The result writer: saves a finished group's images as PNGs with their infotext, on a thread of its own, while the
next job samples — then gives each job its terminal event. FIFO, so a job's event always follows its own PNGs."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

from .contract import Cancelled, Failed, Finished, SavedImage
from .jobs import Job
from .outputs import OutputStore, filename_fields

log = logging.getLogger(__name__)

SAVE_FAILED = "The images could not be saved on the server (the reason is in the server's log); tell the operator."


class ResultWriter:
    """outputs: where PNGs go (one folder per user and day); on_finished(job): called after each job's terminal
    event (the engine trims its job store there)."""

    def __init__(self, outputs: OutputStore, on_finished: Optional[Callable[[Job], None]] = None):
        self.outputs = outputs
        self._on_finished = on_finished
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="saver")

    def write(self, job: Job, images: list, skipped: bool) -> None:
        """Queue saving `images` — (PIL image, infotext, seed) each — for `job`; the job then ends Finished
        (Cancelled if it was cancelled meanwhile, Failed if the disk refuses)."""
        self._saver.submit(self._save, job, images, skipped)

    def stop(self) -> None:
        """Write everything already queued, then end the thread."""
        self._saver.shutdown(wait=True)

    def _save(self, job: Job, images: list, skipped: bool) -> None:
        try:
            if job.cancel_requested.is_set():
                event = Cancelled()
            else:
                saved = [SavedImage(str(self._save_png(job, image, text, seed)), seed, text) for image, text, seed in images]
                event = Finished(saved, skipped)
        except Exception:  # e.g. a full disk: this job fails, the studio goes on
            log.exception("%s: saving failed", job.id)
            event = Failed(SAVE_FAILED)
        job.finish(event)
        if self._on_finished is not None:
            self._on_finished(job)

    def _save_png(self, job: Job, image, infotext: str, seed: int):
        """One image, named by the job's file name pattern: its fields are the infotext's, the prompt as typed and
        the job's time (when it was submitted)."""
        request = job.request
        fields = filename_fields(infotext, seed, request.prompt, job.created) if request.filename_pattern else None
        return self.outputs.save_png(image, infotext, seed, owner=job.owner, pattern=request.filename_pattern, fields=fields)
