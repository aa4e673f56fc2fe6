from __future__ import annotations

from django.apps import AppConfig


class CaConfig(AppConfig):
    name = "ca"
    label = "govcloud_ca"
    verbose_name = "govcloud certification authority"

    def ready(self) -> None:
        from django_ca.signals import post_issue_cert, post_revoke_cert, pre_sign_cert

        from ca import ocsp
        from ca.policy import enforce

        pre_sign_cert.connect(enforce, dispatch_uid="govcloud-ca-policy")
        # pre-produced OCSP responses: signed at issuance, re-signed (and evicted everywhere) at revocation
        post_issue_cert.connect(ocsp.on_issue, dispatch_uid="govcloud-ca-ocsp-issue")
        post_revoke_cert.connect(ocsp.on_revoke, dispatch_uid="govcloud-ca-ocsp-revoke")
