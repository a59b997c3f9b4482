"""Release command of the test app: creates the schema marker; MIGRATE=fail makes it fail."""

import os
import sys
from pathlib import Path

if os.environ.get("MIGRATE") == "fail":
    print("migration 0003 failed: column already exists", flush=True)
    sys.exit(2)
data = Path(os.environ["RAILGUARD_DATA_DIR"])
data.mkdir(parents=True, exist_ok=True)
(data / "schema").write_text("v1")
print("migrated", flush=True)
