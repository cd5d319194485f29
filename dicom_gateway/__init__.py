"""DICOM gateway: receives ultrasound cine loops from a PACS, has both tiers analyse them over
gRPC, and sends each result back as a DICOM Structured Report (``python -m dicom_gateway``)."""
