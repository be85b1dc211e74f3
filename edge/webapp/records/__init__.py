"""What the kiosk keeps: the SQLite database, the audit chain, the image copies, the data folder, exports."""
