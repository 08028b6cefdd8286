"""A received photograph to its SEG and SR, through the API's worker pool and admission (on the node's event loop)."""

from __future__ import annotations

import asyncio
from io import BytesIO

import pydicom

from model.screening.masks import lesion_masks
from model.screening.summary import ScreeningSummary, summarise
from service.admission import Overloaded
from service.dicom import decode_dicom, dicom_files
from service.worker import WorkerPool


def declared_pixels(data: bytes, max_pixels: int) -> int:
    """Rows x Columns from the header (no pixel data read), at most ``max_pixels``; the limit if unreadable."""
    try:
        header = pydicom.dcmread(BytesIO(data), stop_before_pixels=True)
        return min(int(header.Rows) * int(header.Columns), max_pixels)
    except Exception:  # noqa: BLE001 - the decoder gives the verdict on a file this cannot read
        return max_pixels


class Segmenter:
    """What POST /segment does for a DICOM upload and its multipart SEG and SR answer, for the node."""

    def __init__(self, pool: WorkerPool, max_pixels: int, timeout_s: float, seg_type: str):
        self.pool = pool
        self.max_pixels = max_pixels
        self.timeout_s = timeout_s
        self.seg_type = seg_type

    async def segment(self, data: bytes) -> tuple[list[bytes], ScreeningSummary]:
        """The SEG and SR files of a DICOM photograph, and its summary. Raises Overloaded (busy: admission, or no
        answer in time) or ServiceError (not a photograph RedSeg reads: its status says which)."""
        pool = self.pool
        if not pool.ready:
            raise Overloaded("not_ready", "the model is not ready yet", pool.retry_after())
        with pool.admit(declared_pixels(data, self.max_pixels)) as reservation:
            photo = await asyncio.to_thread(decode_dicom, data, self.max_pixels)
            del data
            mapping = await pool.map(photo.pixels, reservation)
            job = pool.submit(photo.pixels, mapping)
            try:
                result = await asyncio.wait_for(asyncio.shield(job.future), self.timeout_s)
            except TimeoutError:
                job.abandoned = True
                raise Overloaded("timeout", f"no result within {self.timeout_s:.0f} s", pool.retry_after()) from None
            ckpt = pool.checkpoint
            masks = await asyncio.to_thread(lesion_masks, result.probabilities, ckpt.thresholds)
            summary = await asyncio.to_thread(summarise, photo.pixels, result.probabilities, ckpt, masks, mapping.disc)
            files = await asyncio.to_thread(dicom_files, photo.dataset, result.probabilities, dict(ckpt.thresholds),
                                            self.seg_type, ckpt, summary)
        return files, summary
