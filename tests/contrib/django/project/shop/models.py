"""The shop's one model: an order, and which thread of which process stored it."""

from __future__ import annotations

from django.db import models


class Order(models.Model):  # type: ignore[misc]  # Django ships no type information
    number = models.IntegerField(unique=True)
    handled_by = models.CharField(max_length=100)
    pid = models.IntegerField()

    def __str__(self) -> str:
        return f"order {self.number}"
