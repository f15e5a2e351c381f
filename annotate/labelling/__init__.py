"""Labelling: units, rubrics, prompt versions, the pipeline, the completion cache and the run directory."""
