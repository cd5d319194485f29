"""Clients of both tiers, shipped for PACS integrations, the CLI and the benchmarks.

``biomarker`` (round robin, retries, hash-first lookup, streamed uploads), ``expert``
(Predict and the admin calls), ``upload`` (one request or a stream of chunks, by size) and
``sniff`` (is this DICOM?). They import only ``lus``: an integration installs no tier.
Their channels, plaintext or TLS (``ClientTls``), come from ``lus.rpc.client.open_channel``.
"""
