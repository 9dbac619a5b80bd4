"""The workbook as a whole: every notebook executed with papermill (bounded), and the CLI's
artefacts written beside them (``python -m helixlib.workbook``, what ``make workbook`` runs)."""
