"""``python -m lus.sr docs/sr.md``: regenerate the code table of the SR documentation in place."""

import sys
from pathlib import Path

from lus.sr.codes import with_table

if __name__ == "__main__":
    doc = Path(sys.argv[1])
    doc.write_text(with_table(doc.read_text()))
