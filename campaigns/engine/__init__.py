"""The sending engine: MIME building (`mime`), SMTP sessions (`smtp`), reply
classification (`classify`), unsubscribe tokens (`tokens`), claiming (`claiming`)
and status recording (`recording`) of deliveries, the global rate limit
(`ratelimit`) and the chunk loop (`chunk`).

It reports what happened and never changes a burst's status; `campaigns.services`
decides. It imports nothing from services, tasks, admin or API.
"""

from campaigns.engine.chunk import ChunkResult, chunk_send
from campaigns.engine.smtp import SmtpCheck, smtp_check

__all__ = ["ChunkResult", "SmtpCheck", "chunk_send", "smtp_check"]
