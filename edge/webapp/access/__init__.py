"""Who may use the kiosk: staff logins and sessions, API tokens, and the guards on every request."""
