"""Settings the Django way: the key comes from the environment, and there is no default in code."""

import os

SECRET_KEY = os.environ["SECRET_KEY"]
