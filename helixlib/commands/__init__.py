"""The command line, ``python -m helixlib <command>``: one module per command (``add_args``,
``run``), the shared options and exit codes (``common``) and the dispatcher (``main``). Nothing
outside this package and the workbook imports it."""
