"""No SIGTERM handler: the process dies at once, cutting off requests in flight (graceful-shutdown)."""

import notes

notes.main(graceful=False)
