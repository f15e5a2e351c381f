"""A labeller learned from the study's own human codes (``annotate learn``).

It reads a run (its units, as the model saw them, and optionally its LLM labels) and a coded file, trains a cheap
classifier per variable, cross-fitted by chat, and gives every unit a label and probabilities over the scale, as
label rows of a run directory. Beside ``labelling/``: both are labellers that write runs.
"""
