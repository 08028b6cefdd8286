"""Reading and writing files: photographs (JPEG, PNG, TIFF, BMP), PNG maps, DICOM photographs in and DICOM SEG out."""
