"""Services: the business logic behind the views (identify, persist)."""
