"""The one error type of `chord.data`: bad expert data, located by file, row and column."""

from __future__ import annotations


class ExpertDataError(ValueError):
    """Expert data that cannot be used as it is.

    The message always starts with where the problem is, as far as it is known::

        data/expert.parquet, row 17, column 'messages': the last message must be ...

    `file`, `row` (0-based index within the file, counted over all its row groups) and
    `column` are also kept as attributes (None where they do not apply).
    """

    def __init__(
        self, message: str, *, file: str | None = None, row: int | None = None, column: str | None = None
    ) -> None:
        self.file = file
        self.row = row
        self.column = column
        self.reason = message
        where = []
        if file is not None:
            where.append(str(file))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
