"""The evidence timeline SMART app (built static files) and the account it draws (:mod:`.api`)."""
