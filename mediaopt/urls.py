from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, re_path
from django.views.generic import RedirectView
from django_q import admin as q_admin
from django_q import models as q_models

from mediaopt import views
from mediaopt.library.admin import SuperuserOnlyMixin
from metadata import dashboard, status
from metadata.admin import notices
from metadata.admin.common import may_run

admin.site.site_header = "mediaopt"
admin.site.site_title = "mediaopt"
admin.site.index_title = "Image library and metadata"


_admin_index = admin.site.index


def dashboard_index(
    request: HttpRequest, extra_context: dict[str, Any] | None = None
) -> HttpResponse:
    """The admin's home with mediaopt's dashboard above the app list."""
    context = dashboard.dashboard_context(
        user=request.user,
        may_run=may_run(request),
        may_see_jobs=request.user.has_perm("metadata.view_regenerationjob"),
    )
    return _admin_index(request, extra_context={**context, **(extra_context or {})})


admin.site.index = dashboard_index


_admin_each_context = admin.site.each_context


def each_context_with_notices(request: HttpRequest) -> dict[str, Any]:
    """Every admin page's context; first the user's notices of long jobs, as messages."""
    notices.show_waiting(request)
    return _admin_each_context(request)


admin.site.each_context = each_context_with_notices


def ai_status_line(request: HttpRequest) -> HttpResponse:
    """The status as one line, fetched by the library list after it has rendered."""
    return TemplateResponse(
        request,
        "admin/metadata/ai_status.html",
        {"ai_status": status.ai_status(user=request.user), "compact": True},
    )


def _superusers_only(model: type, model_admin: type[admin.ModelAdmin]) -> None:
    # Only what django-q2 registered itself (its queue table only with the ORM broker).
    # django-q2's task tables are the queue's internals: editors never need them.
    if not admin.site.is_registered(model):
        return
    admin.site.unregister(model)
    admin.site.register(model, type(model_admin.__name__, (SuperuserOnlyMixin, model_admin), {}))


for _model, _admin in (
    (q_models.Schedule, q_admin.ScheduleAdmin),
    (q_models.Success, q_admin.TaskAdmin),
    (q_models.Failure, q_admin.FailAdmin),
    (q_models.OrmQ, q_admin.QueueAdmin),
):
    _superusers_only(_model, _admin)

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    re_path(r"^media/(?P<path>.+)$", views.serve_media, name="media"),
    path("admin/ai-status/", admin.site.admin_view(ai_status_line), name="mediaopt_ai_status"),
    path("admin/", admin.site.urls),
]
