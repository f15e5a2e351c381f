"""The run directory, in one place: its typed manifest (manifest.py), the label row (rows.py), the journal,
lock and tables (store.py), whole-file writes (outputs.py), and reading a run back (reader.py)."""
