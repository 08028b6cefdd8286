"""DICOM photographs built in the tests from RGB arrays: Ophthalmic Photography 8 Bit or VL Photographic,
uncompressed (RGB), JPEG baseline (YBR_FULL_422, as fundus cameras write them) or RLE."""

from __future__ import annotations

import os
import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate

from model.formats.dicom import to_bytes  # noqa: F401  (the tests write their photographs with it)

PATIENT = {"PatientName": "Doe^Jane", "PatientID": "RS-0001", "PatientBirthDate": "19600101", "PatientSex": "F"}


def photograph(
    rgb: np.ndarray, encoding: str = "explicit", sop_class: str = uid.OphthalmicPhotography8BitImageStorage
) -> Dataset:
    """``encoding``: explicit (Explicit VR Little Endian, RGB), jpeg (JPEG baseline, YBR_FULL_422), rle."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
    ds.update(PATIENT)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid.generate_uid(), uid.generate_uid()
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101500", "1", "A1"
    ds.ReferringPhysicianName, ds.SeriesNumber, ds.InstanceNumber = "", 1, 1
    ds.Modality = "OP" if sop_class == uid.OphthalmicPhotography8BitImageStorage else "XC"
    ds.Manufacturer, ds.ContentDate, ds.ContentTime = "test camera", "20240102", "101500"
    ds.ImageType, ds.BurnedInAnnotation, ds.LossyImageCompression = ["ORIGINAL", "PRIMARY"], "NO", "00"
    ds.ImageLaterality, ds.PatientOrientation = "R", ""
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = "RGB"
    if encoding == "explicit":
        ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
        ds.PixelData = np.ascontiguousarray(rgb, np.uint8).tobytes()
    elif encoding == "jpeg":
        buffer = BytesIO()
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=95, subsampling="4:2:2")
        ds.file_meta.TransferSyntaxUID = uid.JPEGBaseline8Bit
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
    elif encoding == "rle":
        ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
        ds.PixelData = np.ascontiguousarray(rgb, np.uint8).tobytes()
        ds.compress(uid.RLELossless)
    else:
        raise ValueError(encoding)
    return ds


def sample_rgb(width: int = 120, height: int = 80) -> np.ndarray:
    """The sample IDRiD photograph (assets/, CC BY 4.0), shrunk, RGB uint8."""
    image = Image.open(Path(__file__).resolve().parents[1] / "assets" / "IDRiD_05.jpg").convert("RGB")
    return np.asarray(image.resize((width, height), Image.Resampling.BOX))


DCIODVFY = shutil.which("dciodvfy")
REQUIRE_TOOLS = os.environ.get("REDSEG_REQUIRE_DICOM_TOOLS") == "1"
"""CI sets it (.ci/run installs dicom3tools and Orthanc): a missing tool then fails its test instead of skipping it."""


def dciodvfy_errors(data: bytes, scratch: Path, iod: str = "Segmentation") -> list[str]:
    """The 'Error' lines of dicom3tools' IOD validator on a DICOM file (warnings are not errors); ``iod``: a word
    of the IOD's name as dciodvfy prints it first (Segmentation, ComprehensiveSR)."""
    if DCIODVFY is None:
        if REQUIRE_TOOLS:
            raise AssertionError("REDSEG_REQUIRE_DICOM_TOOLS=1 but dciodvfy (Debian's dicom3tools) is not installed")
        pytest.skip("dciodvfy (Debian's dicom3tools) is not installed")
    path = scratch / "validate.dcm"
    path.write_bytes(data)
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    lines = (result.stdout + result.stderr).splitlines()
    assert any(iod in line for line in lines[:3]), lines[:5]  # it recognised the IOD
    return [line for line in lines if line.startswith("Error")]
