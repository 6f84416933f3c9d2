"""Command-line programs; :mod:`svde.cli.common` holds what they share."""
