"""The two cached views: dashboard metrics and the people dropdown."""
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from core.caching import TourJobForm, cache_dashboard_metrics
from core.models import Asset, AssetAssignment, People, PeopleEventlog


@require_GET
@cache_dashboard_metrics(timeout=settings.CACHE_TIMEOUTS["DASHBOARD_METRICS"])
def dashboard_metrics(request):
    return {
        "people_active": People.objects.for_request(request).filter(enable=True).count(),
        "assets": Asset.objects.for_request(request).count(),
        "assets_working": Asset.objects.for_request(request)
                               .filter(runningstatus=Asset.WORKING).count(),
        "assets_assigned": AssetAssignment.objects.for_request(request).count(),
        "events": PeopleEventlog.objects.for_request(request).count(),
    }


@require_GET
def people_dropdown(request):
    form = TourJobForm(request=request)
    return JsonResponse({"people": [[pk, name] for pk, name in form.fields["people"].choices]})
