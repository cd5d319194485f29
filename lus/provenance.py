"""Plain-language notices that travel with every artifact and answer made from research data."""

SYNTHETIC_DATA_NOTICE = (
    "SYNTHETIC DATA - NOT FOR CLINICAL USE. Generated cine loops; a model trained on them "
    "is for tests, demos and load benchmarks only and must never inform a clinical decision."
)

RESEARCH_DATA_NOTICE = (
    "RESEARCH USE ONLY - NOT FOR CLINICAL USE. Trained on a small public research data set; "
    "not a medical device."
)

INT8_PARITY_KEY = "lus_int8_parity"
"""ONNX metadata key of an int8 model's parity check against its fp32 model (a JSON object with
``passed``, the largest probability difference and per-biomarker AUC differences), written by
``trainer.int8_parity`` and required by the biomarker server before it serves int8."""
