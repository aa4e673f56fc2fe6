"""The cloud layer: the government cloud on OpenStack as Pulumi ComponentResources, driven by the stack model.

``program.build()`` is the whole program; ``__main__.py`` is what ``pulumi up`` runs. See docs/cloud.md.
"""
