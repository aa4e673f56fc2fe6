from __future__ import annotations

from django.apps import AppConfig


class CaConfig(AppConfig):
    name = "ca"
    label = "govcloud_ca"
    verbose_name = "govcloud certification authority"

    def ready(self) -> None:
        from django_ca.signals import pre_sign_cert

        from ca.policy import enforce

        pre_sign_cert.connect(enforce, dispatch_uid="govcloud-ca-policy")
