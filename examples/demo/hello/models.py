from django.db import models


class Hit(models.Model):
    created = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"Hit {self.pk} at {self.created:%Y-%m-%d %H:%M:%S}"
