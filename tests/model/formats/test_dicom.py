"""DICOM photographs in: the accepted kinds decode to the right RGB pixels, the others are named."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import uid

from model.formats.dicom import DicomCorrupt, DicomTooLarge, DicomUnsupported, is_dicom, read_dicom
from tests.dicom_files import photograph, sample_rgb, to_bytes


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return sample_rgb()


@pytest.mark.parametrize(
    "encoding, sop_class, tolerance",
    [
        ("explicit", uid.OphthalmicPhotography8BitImageStorage, 0),
        ("rle", uid.OphthalmicPhotography8BitImageStorage, 0),
        ("jpeg", uid.OphthalmicPhotography8BitImageStorage, 4),  # lossy: mean absolute error
        ("jpeg", uid.VLPhotographicImageStorage, 4),
    ],
)
def test_photographs_decode_to_their_rgb_pixels(rgb, encoding, sop_class, tolerance):
    data = to_bytes(photograph(rgb, encoding, sop_class))
    assert is_dicom(data)
    photo = read_dicom(data, max_pixels=10**6)
    assert photo.pixels.dtype == np.uint8 and photo.pixels.shape == rgb.shape
    error = np.abs(photo.pixels.astype(int) - rgb).mean(axis=(0, 1))
    assert (error <= tolerance).all(), error  # per channel: a YBR/RGB mix-up would be far off
    assert photo.dataset.SOPInstanceUID and photo.dataset.PhotometricInterpretation in ("RGB", "YBR_FULL_422")


def test_grey_photograph_becomes_three_equal_channels(rgb):
    ds = photograph(rgb)
    grey = rgb[..., 1].copy()
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelData = 1, "MONOCHROME2", grey.tobytes()
    del ds.PlanarConfiguration
    pixels = read_dicom(to_bytes(ds)).pixels
    assert pixels.shape == rgb.shape and (pixels == grey[..., None]).all()


def test_unsupported_kinds_are_named(rgb):
    report = photograph(rgb)
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = uid.BasicTextSRStorage
    with pytest.raises(DicomUnsupported, match="Basic Text SR Storage"):
        read_dicom(to_bytes(report))
    jpeg2000 = photograph(rgb, "jpeg")
    jpeg2000.file_meta.TransferSyntaxUID = uid.JPEG2000Lossless
    with pytest.raises(DicomUnsupported, match="JPEG 2000"):
        read_dicom(to_bytes(jpeg2000))
    palette = photograph(rgb)
    palette.PhotometricInterpretation = "PALETTE COLOR"
    with pytest.raises(DicomUnsupported, match="PALETTE COLOR"):
        read_dicom(to_bytes(palette))


def test_pixel_limit_is_checked_before_decoding(rgb):
    bomb = photograph(rgb)
    bomb.Rows, bomb.Columns = 60000, 60000  # declared only: the pixel data is tiny
    with pytest.raises(DicomTooLarge, match="60000x60000"):
        read_dicom(to_bytes(bomb), max_pixels=10**7)
    with pytest.raises(DicomTooLarge):
        read_dicom(to_bytes(photograph(rgb)), max_pixels=rgb.shape[0] * rgb.shape[1] - 1)


@pytest.mark.parametrize("encoding", ["explicit", "jpeg"])
def test_truncated_and_corrupt_files_are_corrupt(rgb, encoding):
    data = to_bytes(photograph(rgb, encoding))
    for broken in (data[: len(data) // 2], data[:140], data[:132] + b"\xff" * 64):
        with pytest.raises(DicomCorrupt):
            read_dicom(broken)


def test_messages_carry_no_patient_data(rgb):
    report = photograph(rgb)
    report.SOPClassUID = uid.ComprehensiveSRStorage
    try:
        read_dicom(to_bytes(report))
    except DicomUnsupported as exc:
        assert "Doe" not in str(exc) and "RS-0001" not in str(exc) and "1960" not in str(exc)
