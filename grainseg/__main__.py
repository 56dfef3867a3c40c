"""``python -m grainseg`` runs the command line."""
import sys

from grainseg.cli import main

sys.exit(main())
