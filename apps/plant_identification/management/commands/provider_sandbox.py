"""``manage.py provider_sandbox``: serve the fake Plant.id and Pl@ntNet on a local port (development only)."""

import signal

from django.core.management.base import BaseCommand, CommandError

from apps.plant_identification.sandbox.options import fault_option, latency_option, merge_options
from apps.plant_identification.sandbox.server import SandboxServer, SandboxState


def _stop(*_args) -> None:
    raise KeyboardInterrupt  # leaves serve_forever() in the main thread, then the socket is closed


class Command(BaseCommand):
    help = "Serve Plant.id v3 and Pl@ntNet v2 stand-ins with fault injection (development and tests only)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
        parser.add_argument(
            "--latency",
            action="append",
            type=latency_option,
            default=[],
            metavar="PROVIDER=MS|uniform:LO:HI|normal:MEAN:SD",
        )
        parser.add_argument(
            "--fault",
            action="append",
            type=fault_option,
            default=[],
            metavar="PROVIDER:KIND=RATE",
            help="e.g. plantnet:502=0.1; kinds: timeout reset 500 502 429 401 malformed "
            "not_found (Pl@ntNet) not_plant (Plant.id)",
        )
        parser.add_argument("--hang-seconds", type=float, default=None, help="how long a timeout fault holds")
        parser.add_argument("--retry-after", type=int, default=None, help="the wait a 429 fault announces")
        parser.add_argument(
            "--plantnet-daily-quota",
            type=int,
            default=500,
            help="Pl@ntNet identifications per key per day before real 429s",
        )
        parser.add_argument(
            "--plant-id-key",
            action="append",
            default=[],
            metavar="KEY",
            help="a Plant.id API key the sandbox knows (repeat); none: every key but unknown-* and inactive-*",
        )

    def handle(self, *args, **options):
        changes = merge_options(options["latency"], options["fault"])
        for provider in ("plant_id", "plantnet"):
            for name in ("hang_seconds", "retry_after"):
                if options[name] is not None:
                    changes.setdefault(provider, {})[name] = options[name]
        state = SandboxState(
            options["seed"],
            plantnet_daily_quota=options["plantnet_daily_quota"],
            plant_id_keys=frozenset(options["plant_id_key"]) or None,
        )
        try:
            state.faults.update(changes)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        server = SandboxServer((options["host"], options["port"]), state)
        signal.signal(signal.SIGTERM, _stop)
        self.stdout.write(
            self.style.WARNING(
                f"Provider sandbox (NOT the real services) on {server.base_url}\n"
                f"  PLANT_ID_API_URL={server.plant_id_url()}\n  PLANTNET_API_URL={server.plantnet_url()}\n"
                f"  faults: GET/POST {server.base_url}/sandbox/_control/faults"
            )
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
