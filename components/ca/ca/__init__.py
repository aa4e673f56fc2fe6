"""govcloud's certification authority: django-ca with our hierarchy, profiles, policy and HTTP API."""
