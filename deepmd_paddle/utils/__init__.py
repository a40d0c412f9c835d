"""Small helpers that every stage may use (outputs written whole or not at all)."""
