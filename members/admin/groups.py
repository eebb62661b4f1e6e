"""Groups in the admin: only a superuser adds, changes or deletes one."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.models import Group
from django.http import HttpRequest


class SuperuserOnlyGroupAdmin(BaseGroupAdmin):
    """A group's permissions are its members' permissions: only a superuser changes them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Group | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Group | None = None) -> bool:
        return request.user.is_superuser


admin.site.unregister(Group)
admin.site.register(Group, SuperuserOnlyGroupAdmin)
