import sys

from ..serving import main
from .app import create_app

sys.exit(main("productpage", create_app))
