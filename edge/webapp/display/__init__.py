"""What people read: the pages' languages, local times and percentages."""
