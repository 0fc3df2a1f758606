"""``manage.py idempotency_keys_purge``: delete the Idempotency-Keys past their TTL (run it from cron)."""

from django.core.management.base import BaseCommand

from apps.plant_identification.services.idempotency import idempotency_keys_purge


class Command(BaseCommand):
    help = (
        "Delete every Idempotency-Key older than IDEMPOTENCY_KEY_TTL. An expired key already behaves as new; this "
        "only keeps the table small. The identifications stay."
    )

    def handle(self, *args, **options):
        purged = idempotency_keys_purge()
        self.stdout.write(f"{purged} expired idempotency key(s) deleted")
