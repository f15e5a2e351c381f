"""From labels to findings: agreement statistics, gold labels, validate, agree, diff, samples for human coders."""
