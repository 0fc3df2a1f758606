"""Circuit breakers: the state machine's rules, its shared (Redis) and local stores, and the pybreaker subclass."""
