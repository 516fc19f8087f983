"""How ``ipex-screen serve`` serves HTTP: gunicorn processes, waitress's buffering loop.

``worker`` (the gunicorn worker) -> ``channel`` (waitress tuned: request deadline,
JSON refusals) -> ``answers`` (the JSON bodies). ``paths`` checks, at start and for
``/readyz``, the directories the server must be able to write.
"""
