"""``python -m lus_cli``: the same as the ``lus`` command."""

import sys

from lus_cli.cli import main

if __name__ == "__main__":
    sys.exit(main())
