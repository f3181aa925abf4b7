"""Launching on clusters: the Slurm plan (`slurm.py`, standard library only, run as a file by
`scripts/slurm/chord.sbatch`) and `chord-submit` (`ray job submit` with a curated working dir)."""
