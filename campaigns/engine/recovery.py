"""Writing the journals of chunks that died on this host (see `campaigns.engine.journal`)
to the database, before anyone claims or takes back deliveries here."""

from __future__ import annotations

import logging

from django.conf import settings

from campaigns.engine.claiming import release_leftovers
from campaigns.engine.journal import orphans
from campaigns.engine.recording import Recorder

logger = logging.getLogger(__name__)


def journals_replay() -> int:
    """Record what dead chunks on this host had learnt and give back the rest of what
    they held; returns how many deliveries were written. A journal stays on disk
    when the database cannot take it yet."""
    written = 0
    for orphan in orphans(settings.EMAIL_JOURNAL_DIR):
        try:
            recorder = Recorder(burst_id=orphan.burst_id, token=orphan.token, replay=True)
            for entry in orphan.entries():
                recorder.add(entry.delivery_id, entry.attempts_before, entry.outcome)
            lines = recorder.count
            recorder.flush()
            release_leftovers(burst_id=orphan.burst_id, token=orphan.token)
        except BaseException:
            orphan.give_up()
            raise
        orphan.done()
        done = sum(recorder.outcomes.values())
        written += done
        logger.info(
            "burst %s: a dead chunk's journal replayed: %s outcomes, %s written (the rest were already)",
            orphan.burst_id,
            lines,
            done,
        )
    return written
