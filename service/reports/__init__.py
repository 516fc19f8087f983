"""Reports for operators and a hospital's CDS committee, from the state store (no patient data)."""
