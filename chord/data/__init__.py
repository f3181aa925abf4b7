"""Expert (demonstration) data for CHORD / iw-SFT: parquet in, token rows out.

- `ExpertBuffer`: the driver's endless, seeded, resumable stream of expert rows
  (`next_batch(n) -> ExpertBatch`, `state_dict()` / `load_state_dict()`).
- `ExpertBatch`: token lists plus `to_padded(...)` for verl's tensor layout.
- `validate(...) -> ValidationReport`: a full streaming check (the `chord-check-data` CLI).
- `ExpertDataError`: bad data, named by file, row and column.

Plain pyarrow + torch; no Ray, no verl.
"""

from chord.data.batch import ExpertBatch
from chord.data.buffer import ExpertBuffer
from chord.data.check import LengthSummary, ValidationReport, validate
from chord.data.errors import ExpertDataError

__all__ = ["ExpertBatch", "ExpertBuffer", "ExpertDataError", "LengthSummary", "ValidationReport", "validate"]
