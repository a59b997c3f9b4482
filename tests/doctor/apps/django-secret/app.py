"""The sample app, configured like a Django site: settings read SECRET_KEY (a declared secret)."""

import notes
import settings  # noqa: F401  (fails fast without SECRET_KEY, as Django does)

notes.main()
