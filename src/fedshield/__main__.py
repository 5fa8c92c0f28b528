"""``python -m fedshield`` runs the command line."""

from fedshield.cli.main import app

app()
