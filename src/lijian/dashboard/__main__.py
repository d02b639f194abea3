"""``python -m lijian.dashboard``: print a ``password_hash`` for a ``[[users]]`` entry."""

from __future__ import annotations

import sys

from lijian.dashboard.accounts import main

sys.exit(main())
