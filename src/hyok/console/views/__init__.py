"""The console's page functions, one module per navigation section, each with ``routes()``."""
