"""Puts the request's tenant, client and bu on it.

The full app takes them from the logged-in user's session; this example
reads the X-Tenant-Id, X-Client-Id and X-Bu-Id headers instead.
"""
from django.http import HttpResponseBadRequest


class TenantMiddleware:
    HEADERS = {"tenant_id": "X-Tenant-Id", "client_id": "X-Client-Id", "bu_id": "X-Bu-Id"}

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for attr, header in self.HEADERS.items():
            try:
                setattr(request, attr, int(request.headers[header]))
            except (KeyError, ValueError):
                return HttpResponseBadRequest(f"{header} must be an integer\n")
        return self.get_response(request)
