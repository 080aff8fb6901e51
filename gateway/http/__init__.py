"""aiohttp plumbing: routing and instrumentation, errors, raw answers, fast routes, delivery."""
