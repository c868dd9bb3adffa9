from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.views.static import serve


@staff_member_required
def serve_media(request: HttpRequest, path: str) -> HttpResponse:
    """Uploaded images are the customer's: only staff may see them."""
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
