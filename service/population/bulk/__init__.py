"""Fetching a Bulk Data export from a FHIR server (``ipex-screen population --from URL``).

    errors.py   the BulkError tree
    http.py     one requests.Session: timeouts, a total deadline, retries on 429/5xx
    auth.py     SMART Backend Services: a signed client assertion for an access token
    fetch.py    kick-off, polling, downloading the output and error files
"""
