"""`python -m producers.cli`: the `cancelq` command without the installed entry point."""

from producers.cli import main

main(prog_name="cancelq")
