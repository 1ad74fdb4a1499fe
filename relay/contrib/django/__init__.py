"""relay in Django: ``INSTALLED_APPS += ["relay.contrib.django"]`` and ``RELAY = {...}``.

See docs/django.md. Nothing here is imported by ``import relay``.
"""
