"""Allow ``python -m hyok.cli``."""

from hyok.cli.main import main

main()
