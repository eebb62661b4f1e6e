"""The members app's admin: members (with import and the delivery timeline) and groups.

Importing the package registers both with the admin site.
"""

from members.admin import groups, members

__all__ = ["groups", "members"]
