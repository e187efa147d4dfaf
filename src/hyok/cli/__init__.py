"""The ``hyok`` command line."""
