"""Command-line programs: one module per ``svde`` subcommand (``train``, ``eval``, ``predict``,
``export``, ``benchmark``, ``paper_table``), each with ``main(argv, prog) -> int``;
:mod:`svde.cli.main` is the ``svde`` command and :mod:`svde.cli.common` holds what they share."""
