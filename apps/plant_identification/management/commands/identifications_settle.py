"""``manage.py identifications_settle``: write off the late answers that can no longer arrive (run it from cron)."""

from django.core.management.base import BaseCommand

from apps.plant_identification.services.late_answers import identifications_settle_overdue


class Command(BaseCommand):
    help = (
        "Mark as lost every provider part still pending past its identify deadline (its worker died), so no "
        "identification stays incomplete. Reading an identification does the same for that one."
    )

    def handle(self, *args, **options):
        settled = identifications_settle_overdue()
        self.stdout.write(f"{settled} identification(s) settled")
