"""Comparison (`chord-compare`): methods trained side by side on one task, data, seed and budget,
then evaluated; the plan, the run loop, the Markdown/JSON report and the plots."""
