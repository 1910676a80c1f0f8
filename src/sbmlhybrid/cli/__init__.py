"""Command-line interface: a thin layer over the library API (`sbmlhybrid ...`).

`sbmlhybrid.cli.main.main` is the entry point; each module here registers its sub-commands.
"""

__all__: list[str] = []
