from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from campaigns.admin.bounce_upload import bounce_upload
from campaigns.views import unsubscribe, unsubscribe_test
from config.admin_login import ThrottledAdminLoginForm
from config.api import api

# The admin login counts failures with the API's login (config/admin_login.py).
admin.site.login_form = ThrottledAdminLoginForm

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    # Before the admin's own routes, which would read "upload" as an object id.
    path("admin/campaigns/mailevent/upload/", bounce_upload, name="bounce_upload"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    # ESP webhooks (bounces, complaints) at django-anymail's paths; importing the
    # module connects anymail's tracking signal.
    path("webhooks/anymail/", include("campaigns.webhooks")),
    # Before the token route: "test" would read as a (bad) token there.
    path("unsubscribe/test/", unsubscribe_test, name="unsubscribe_test"),
    path("unsubscribe/<str:token>/", unsubscribe, name="unsubscribe"),
]
