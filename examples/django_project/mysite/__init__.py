"""A tiny Django project using relay: see docs/django.md."""
