"""``redseg-dicom-node``: RedSeg as a DICOM node. A Storage SCP takes fundus photographs from a PACS or camera,
segments each with the API's worker pool and admission, and stores the DICOM SEG and SR to a destination
(C-STORE or STOW-RS), keeping them on disk until the destination has them (docs/dicom.md)."""
