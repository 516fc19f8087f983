"""The rule set as published: its FHIR Library and its source-attributes page.

Both are generated from the rule documents (the ``publication`` section holds the
source attributes of 45 CFR 170.315(b)(11)(iv)(A)); nothing is typed twice.
"""
