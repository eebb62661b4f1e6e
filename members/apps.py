from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _tally_triggers_ensure(sender, using: str = "default", **kwargs) -> None:
    """After every migrate: the tally's triggers exist (a migration that rebuilt the
    member table on SQLite drops them), and the tally is what a recount says."""
    from django.db import connections

    from members.services import mailing_list_counts_repair, member_tally_repair
    from members.tally import list_triggers_install, list_triggers_present, triggers_install, triggers_present

    connection = connections[using]
    tables = connection.introspection.table_names()
    if "members_member" not in tables or "members_membertally" not in tables:
        return  # migrated back before the tally
    if not triggers_present(connection):
        triggers_install(connection)
        member_tally_repair()
    if "members_listmembership" in tables and not list_triggers_present(connection):
        list_triggers_install(connection)
        mailing_list_counts_repair()


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = "Members"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_tally_triggers_ensure, sender=self)
        from members import signals  # noqa: F401  (connects its receivers)
