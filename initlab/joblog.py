"""Which job a log record belongs to, when one process trains several jobs at once.

The batched launcher (hydra_plugins/initlab_batched_launcher) gives every member of a group its
own log file: a record with a ``job_dir`` attribute goes to that job's log only, one without it to
every member's log. Code that works for one member at a time (its phases in initlab.ensemble)
runs inside ``member_records(job_dir)``, so every record made there, by any logger, carries it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator, Union

ATTRIBUTE = "job_dir"


@contextlib.contextmanager
def member_records(job_dir: Union[str, Path]) -> Iterator[None]:
    """Log records made inside this block carry ``job_dir`` (the absolute folder, as a string)."""
    factory = logging.getLogRecordFactory()
    owner = str(Path(job_dir).absolute())

    def tagged(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if not hasattr(record, ATTRIBUTE):
            setattr(record, ATTRIBUTE, owner)
        return record

    logging.setLogRecordFactory(tagged)
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)


def owner(record: logging.LogRecord) -> Union[str, None]:
    """The job folder a record belongs to, or None for a record of the whole group."""
    value = getattr(record, ATTRIBUTE, None)
    return None if value is None else str(Path(value).absolute())
