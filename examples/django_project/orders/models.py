from __future__ import annotations

from django.db import models


class Order(models.Model):  # type: ignore[misc]
    number = models.IntegerField(unique=True)
    email = models.EmailField()
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"order {self.number}"
