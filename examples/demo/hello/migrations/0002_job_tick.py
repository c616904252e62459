# Formatted with ruff; Django declares a migration's operations as class-level lists.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("hello", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Job",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("queued", models.DateTimeField(auto_now_add=True)),
                ("queued_release", models.CharField(max_length=64)),
                ("done", models.DateTimeField(null=True)),
                ("done_release", models.CharField(blank=True, max_length=64)),
                ("done_colour", models.CharField(blank=True, max_length=16)),
            ],
        ),
        migrations.CreateModel(
            name="Tick",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("origin", models.CharField(max_length=200)),
                ("sent_at", models.FloatField()),
            ],
        ),
    ]
