"""django-ca's public views at the root: /ocsp/<ca>/cert/, /crl/<ca>/, /crl/ca/<ca>/, /issuer/<ca>.der."""

from django.urls import include, path

urlpatterns = [path("", include("django_ca.urls"))]
