import sys

from livegate.cli.main import main

sys.exit(main())
