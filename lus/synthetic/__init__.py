"""Synthetic lung-ultrasound cine loops that render the 38 biomarkers they are labelled with.

No public data set carries the gare2022-lus38 labels, so tests, demos and load benchmarks train on
generated loops. Every file and manifest row carries
:data:`lus.provenance.SYNTHETIC_DATA_NOTICE`: a model trained on them must never inform a clinical
decision.

Modules, one concern each:

* :mod:`~lus.synthetic.case`: the findings of one loop, their labels and derived task labels;
* :mod:`~lus.synthetic.layout`: physical sizes of the findings and where they fit;
* :mod:`~lus.synthetic.style`: nuisance parameters (gain, motion, anatomy) and style versions;
* :mod:`~lus.synthetic.filters`: vectorised image helpers;
* :mod:`~lus.synthetic.scan`: probe geometry (flat frame, convex sector, linear rectangle);
* :mod:`~lus.synthetic.render`: the B-mode renderer;
* :mod:`~lus.synthetic.writer`: video files via PyAV;
* :mod:`~lus.synthetic.dataset`: the data set generator with its manifest.
"""

from lus.synthetic.case import SyntheticCase, sample_case
from lus.synthetic.dataset import generate_dataset
from lus.synthetic.render import render_frames
from lus.synthetic.style import DEFAULT_STYLE_VERSION, STYLE_VERSIONS, RenderStyle
from lus.synthetic.writer import read_video, write_video

__all__ = [
    "DEFAULT_STYLE_VERSION",
    "STYLE_VERSIONS",
    "RenderStyle",
    "SyntheticCase",
    "generate_dataset",
    "read_video",
    "render_frames",
    "sample_case",
    "write_video",
]
