from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from campaigns.views import unsubscribe, unsubscribe_test
from config.admin_login import ThrottledAdminLoginForm
from config.api import api

# The admin login counts failures with the API's login (config/admin_login.py).
admin.site.login_form = ThrottledAdminLoginForm

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    # Before the token route: "test" would read as a (bad) token there.
    path("unsubscribe/test/", unsubscribe_test, name="unsubscribe_test"),
    path("unsubscribe/<str:token>/", unsubscribe, name="unsubscribe"),
]
