"""Command-line interface."""

def main(argv=None):
    raise SystemExit("not yet")
