"""SQL, and nothing else: asyncpg functions split by aggregate; callers own the transactions."""
