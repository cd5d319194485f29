"""The ``lus`` command line: the top floor, composing the trainer and both tiers.

Nothing imports this package; it imports everything below it (see the import contract in
``pyproject.toml``).
"""
