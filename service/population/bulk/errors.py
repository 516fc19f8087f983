"""What can go wrong fetching an export; every message is safe to print (no token, no JWT).

    BulkError
    ├── BulkConfigError     the client id, key file or URL cannot be used
    ├── BulkAuthError       the token endpoint refused us (or could not be found)
    ├── BulkExportFailed    the server says the export failed (its OperationOutcome)
    ├── BulkDeadlineExceeded  the whole fetch took longer than IPEX_BULK_DEADLINE_S
    └── BulkHttpError       an answer we could not use, after the retries
"""

from __future__ import annotations


class BulkError(RuntimeError):
    """Fetching the export failed; ``str()`` says why."""


class BulkConfigError(BulkError):
    pass


class BulkAuthError(BulkError):
    pass


class BulkExportFailed(BulkError):
    pass


class BulkDeadlineExceeded(BulkError):
    pass


class BulkHttpError(BulkError):
    pass
