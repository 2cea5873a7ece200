"""Business logic between the HTTP layer and the store: builds commands, reads consistent state."""
