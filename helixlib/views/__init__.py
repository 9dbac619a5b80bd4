"""Everything that renders, for the commands and the notebooks: text tables and reports
(``tables``, ``reports``), plots (``rankmap``, ``monitor_plots``, ``estimate_views``,
``validate_views``), the explorer widget (``widgets``) and the softmax demonstration. Views
arrange helixlib's results; they compute nothing the domain does not."""
