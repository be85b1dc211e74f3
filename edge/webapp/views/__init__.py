"""The blueprints (pages, history, auth, tokens, audit, api), the error pages and what only they use."""
