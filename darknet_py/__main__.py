"""``python -m darknet_py`` is the ``darknet-py`` command."""
import sys

from .cli import main

sys.exit(main())
