"""Plant identification: provider clients, circuit breakers, the combined service and its API."""
