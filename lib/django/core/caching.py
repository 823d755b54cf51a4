"""Tenant-aware cache keys and the two cached things of the example.

Keys are tenant:{t}:client:{c}:bu:{b}:{category}:{identifier}, set through
Django's cache (django-redis), which stores them under KEY_PREFIX:VERSION:.
Nothing here invalidates: tenant_cache clears these keys from PostgreSQL
when a watched table changes (migration 0002).
"""
import functools

from django import forms
from django.conf import settings
from django.core.cache import cache
from django.http import JsonResponse

from core.models import People

KEY_PREFIX = "tenant:{tenant}:client:{client}:bu:{bu}:"


def get_tenant_cache_key(category, identifier, request):
    """get_tenant_cache_key("dashboard", "metrics", request)
    -> "tenant:1:client:2:bu:3:dashboard:metrics"."""
    return KEY_PREFIX.format(tenant=request.tenant_id, client=request.client_id,
                             bu=request.bu_id) + f"{category}:{identifier}"


def tenant_cache_key_format():
    """The tenant_cache.key_format matching these keys as Redis stores them:
    Django's make_key (KEY_PREFIX, VERSION, KEY_FUNCTION) of the template."""
    template = KEY_PREFIX + "{pattern}"
    key_format = cache.make_key(template)
    if not key_format.endswith(template):
        raise ValueError(f"the cache's KEY_FUNCTION turns {template!r} into {key_format!r}; "
                         "tenant_cache needs the key appended unchanged")
    return key_format


def cache_dashboard_metrics(timeout):
    """Cache a view's dict per tenant, client and bu under dashboard:metrics."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            key = get_tenant_cache_key("dashboard", "metrics", request)
            data = cache.get(key)
            if data is None:
                data = view(request, *args, **kwargs)
                cache.set(key, data, timeout)
            return JsonResponse(data)
        return wrapper
    return decorator


def cached_people_choices(request):
    """The people dropdown of the request's tenant/client/bu, cached."""
    def load():
        return list(People.objects.for_request(request).filter(enable=True)
                    .order_by("peoplename", "id").values_list("id", "peoplename"))
    return cache.get_or_set(get_tenant_cache_key("dropdown", "people:all", request),
                            load, settings.CACHE_TIMEOUTS["DROPDOWN_DATA"])


class CachedPeopleDropdownMixin:
    """Form mixin: the "people" field's choices come from the cache."""
    def __init__(self, *args, request, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["people"].choices = cached_people_choices(request)


class TourJobForm(CachedPeopleDropdownMixin, forms.Form):
    people = forms.TypedChoiceField(coerce=int)
