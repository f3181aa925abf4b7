"""Training on verl: the `chord-train` entry point, the trainer (driver-side expert merge), the
actor workers, the actor loss that wraps `chord.losses`, and the `chord:` config section."""
