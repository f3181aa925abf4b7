"""chord-rl's verl recipe: `train/` (the verl wiring), `plugins/` (CPU platform, HF rollout, reward
manager), `eval/` (`chord-eval`), `compare/` (`chord-compare`), `launch/` (Slurm, `chord-submit`)."""
