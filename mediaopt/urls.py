from django.contrib import admin
from django.urls import path, re_path
from django.views.generic import RedirectView

from mediaopt import views

admin.site.site_header = "mediaopt"
admin.site.site_title = "mediaopt"
admin.site.index_title = "Image library and metadata"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    re_path(r"^media/(?P<path>.+)$", views.serve_media, name="media"),
    path("admin/", admin.site.urls),
]
