"""Subcommands of ``zgbench``: one module each, found automatically.

A module ``zgbench/commands/NAME.py`` defines ``HELP`` (one line for ``zgbench --help``),
``add_arguments(parser)`` and ``main(args) -> int``. Its docstring is the command's
``--help`` description. Use :func:`zgbench.cli.load_registry` to get the plugins (it honours
``-p no:NAME``) and raise :class:`zgbench.errors.UsageError` for bad input (exit status 2).
"""
