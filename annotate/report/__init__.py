"""Reports: terminal tables, figures and self-contained HTML pages for each command."""
