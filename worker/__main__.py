"""``python -m worker`` is the same as ``ppw``."""

from worker.cli import main

main()
