"""``python -m deepmd_paddle`` is ``dpp``."""
import sys

from deepmd_paddle.cli import main

sys.exit(main())
