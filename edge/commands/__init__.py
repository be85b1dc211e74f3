"""The kiosk's command lines (`pneumoedge COMMAND`): one module per command, each with `register`."""
