"""The fuzz corpus: seed inputs built at run time and deterministic mutators of them.

``seeds`` builds small valid inputs of every kind the public RPCs take (DICOM in several
transfer syntaxes, MP4, AVI, MOV, GIF, raw frames, biomarker vectors, task names, batches),
with a planted patient name and ID that must never come back in a reply or a log.
``mutators`` breaks them the ways hostile or damaged uploads do, and ``cases`` turns a seed
number into the same stream of RPC requests every time; ``driver`` sends them and tallies
statuses. ``tests/integration/test_fuzz_smoke.py`` runs a few hundred; ``benchmarks/soak_fuzz.py``
runs 100,000.
"""
