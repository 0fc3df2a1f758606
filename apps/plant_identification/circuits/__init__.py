"""Circuit breakers, one per provider, whose state every worker shares through Redis.

- ``states``: the state and reason names (closed, open, half-open; failures, quota, credentials, forced, slow).
- ``rules``: the state machine as plain functions over a ``CircuitRecord`` (the in-process path).
- ``lua``: the same operations as atomic Redis scripts (the shared path).
- ``store``: where a record lives: Redis, or memory while Redis is unreachable.
- ``breaker``: ``ProviderCircuitBreaker``, the pybreaker subclass the clients call through, and one per provider.
- ``snapshots``: a circuit as readers see it (``/health/``, the admin, the circuits API).
- ``latency``: the recent latency of a provider's successful calls (p50/p95), fleet-wide or this worker's.
- ``events``: transitions, logged, kept in Redis the moment they happen and stored as ``CircuitEvent`` rows.
- ``alerts``: operators told once per episode fleet-wide (mail_admins, a webhook) when a circuit opens or stays open.
- ``overrides``: staff forcing a circuit open or closed, with an audit record.
"""
