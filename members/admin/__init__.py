"""The members app's admin: members (with import and the delivery timeline), groups,
mailing lists, segments and suppressed addresses.

Importing the package registers them with the admin site.
"""

from members.admin import audiences, groups, members, suppressions

__all__ = ["audiences", "groups", "members", "suppressions"]
