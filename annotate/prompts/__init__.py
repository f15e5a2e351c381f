"""Prompts apart from the labelling loop: rubrics and their schemas (rubrics.py), the units a task sees
(units.py), versioned prompt templates and their sandboxed rendering (template.py), finding, checking and
locking versions (library.py), and showing what the model sees (preview.py)."""
