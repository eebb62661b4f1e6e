"""The members app's admin: members (with import and the delivery timeline), groups,
mailing lists and segments.

Importing the package registers them with the admin site.
"""

from members.admin import audiences, groups, members

__all__ = ["audiences", "groups", "members"]
