from __future__ import annotations

from django.apps import AppConfig


class ShopConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    name = "tests.contrib.django.project.shop"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"
